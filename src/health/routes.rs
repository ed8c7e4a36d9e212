//! The probe paths, and the few instructions that turn every other
//! request away.

use super::status::Probe;

/// The probe paths, with what turns most other paths away in a few
/// instructions: every request is asked whether it is a probe.
pub(crate) struct Routes {
    entries: Box<[(Box<str>, Probe)]>,
    /// The shortest path's length (at least 2: `build()` sees to it).
    shortest: usize,
    /// The second bytes of the paths, as a set (the first is always `/`).
    second_bytes: [u64; 4],
}

impl Routes {
    pub(crate) fn new(entries: Box<[(Box<str>, Probe)]>) -> Routes {
        let mut second_bytes = [0u64; 4];
        for (path, _) in &entries {
            if let Some(&byte) = path.as_bytes().get(1) {
                second_bytes[usize::from(byte >> 6)] |= 1 << (byte & 63);
            }
        }
        Routes {
            shortest: entries
                .iter()
                .map(|(path, _)| path.len())
                .min()
                .unwrap_or(usize::MAX),
            entries,
            second_bytes,
        }
    }

    /// Which probe `path` asks about, and which one check, if any.
    #[inline]
    pub(crate) fn find<'p>(&self, path: &'p str) -> Option<(Probe, Option<&'p str>)> {
        let bytes = path.as_bytes();
        if bytes.len() < self.shortest.max(2) {
            return None;
        }
        let second = bytes[1];
        if self.second_bytes[usize::from(second >> 6)] & (1 << (second & 63)) == 0 {
            return None;
        }
        route(&self.entries, path)
    }
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(path, probe)| (path, probe)))
            .finish()
    }
}

/// Which probe a path asks about, and which one check, if any, by its
/// length and one byte before any comparison of text.
#[inline]
fn route<'p>(routes: &[(Box<str>, Probe)], path: &'p str) -> Option<(Probe, Option<&'p str>)> {
    let bytes = path.as_bytes();
    routes.iter().find_map(|(prefix, probe)| {
        let prefix = prefix.as_bytes();
        match bytes.len().cmp(&prefix.len()) {
            std::cmp::Ordering::Less => None,
            std::cmp::Ordering::Equal => (bytes == prefix).then_some((*probe, None)),
            std::cmp::Ordering::Greater => {
                if bytes[prefix.len()] != b'/' || !bytes.starts_with(prefix) {
                    return None;
                }
                let check = &path[prefix.len() + 1..];
                (!check.is_empty() && !check.contains('/')).then_some((*probe, Some(check)))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_a_probe_and_maybe_one_check() {
        let routes: Vec<(Box<str>, Probe)> = vec![
            ("/livez".into(), Probe::Liveness),
            ("/readyz".into(), Probe::Readiness),
        ];
        let routes = Routes::new(routes.into());
        let route = |routes: &Routes, path| routes.find(path);
        assert_eq!(route(&routes, "/readyz"), Some((Probe::Readiness, None)));
        assert_eq!(
            route(&routes, "/readyz/database"),
            Some((Probe::Readiness, Some("database")))
        );
        assert_eq!(route(&routes, "/livez"), Some((Probe::Liveness, None)));
        for other in [
            "/",
            "",
            "/ready",
            "/readyzz",
            "/readyz/",
            "/readyz/a/b",
            "/api/readyz",
        ] {
            assert_eq!(route(&routes, other), None, "{other}");
        }
    }
}
