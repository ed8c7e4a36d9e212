//! Variants (RFC 9111 §4.1): a stored response answers a request only when
//! every request field its `Vary` names matches the request that got it.
//! Field values are compared after combining repeated field lines and
//! normalising whitespace, or through a normaliser for fields whose
//! spelling varies more than their meaning (`Accept-Encoding`,
//! `Accept-Language`), so variants do not multiply.

use std::sync::Arc;

use http::header::VARY;
use http::{HeaderMap, HeaderName};

/// Turns a request field's combined value into the form variants are
/// compared in.
///
/// ```
/// use tower_armor::cache::VaryNormalizer;
///
/// let normalize = VaryNormalizer::accept_encoding();
/// assert_eq!(normalize.apply("GZIP;q=1.0, br, identity;q=0"), "br,gzip");
/// assert_eq!(normalize.apply("br, gzip"), "br,gzip");
/// ```
#[derive(Clone)]
pub struct VaryNormalizer(Arc<dyn Fn(&str) -> String + Send + Sync>);

impl VaryNormalizer {
    /// A normaliser from a function.
    pub fn new(normalize: impl Fn(&str) -> String + Send + Sync + 'static) -> VaryNormalizer {
        VaryNormalizer(Arc::new(normalize))
    }

    /// `Accept-Encoding`: the codings accepted (q above 0), lowercase,
    /// sorted and without duplicates; weights otherwise play no part.
    pub fn accept_encoding() -> VaryNormalizer {
        VaryNormalizer::new(|value| sorted_accepted(value, false))
    }

    /// `Accept-Language`: the language ranges accepted, lowercase, by
    /// descending weight, ranges of equal weight sorted (HTTP gives their
    /// order no meaning).
    pub fn accept_language() -> VaryNormalizer {
        VaryNormalizer::new(|value| sorted_accepted(value, true))
    }

    /// `Accept-Encoding` as the coding a compression layer below the cache
    /// will pick from `preference` (the server's order): the highest
    /// weight, ties to the earlier, identity only when it weighs more. So
    /// a cache above compression keeps one variant per coding, each
    /// compressed once and served many times. Give the same codings, in
    /// the same order, as the compression layer.
    ///
    /// ```
    /// use tower_armor::cache::VaryNormalizer;
    ///
    /// let normalize = VaryNormalizer::negotiated_coding(["br", "gzip"]);
    /// assert_eq!(normalize.apply("gzip, br, deflate"), "br");
    /// assert_eq!(normalize.apply("gzip;q=1, br;q=0.5"), "gzip");
    /// assert_eq!(normalize.apply("deflate"), "identity");
    /// ```
    pub fn negotiated_coding(preference: impl IntoIterator<Item = &'static str>) -> VaryNormalizer {
        let preference: Vec<&'static str> = preference.into_iter().collect();
        VaryNormalizer::new(move |value| negotiated(value, &preference).to_owned())
    }

    /// Applies the normaliser.
    pub fn apply(&self, value: &str) -> String {
        (self.0)(value)
    }
}

impl std::fmt::Debug for VaryNormalizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VaryNormalizer(..)")
    }
}

/// The members of an `Accept-*` list with a weight above 0, lowercase;
/// sorted by name, or by descending weight then name when `by_weight`.
fn sorted_accepted(value: &str, by_weight: bool) -> String {
    let mut members: Vec<(String, u16)> = value
        .split(',')
        .filter_map(|member| {
            let mut params = member.split(';');
            let name = params.next()?.trim().to_ascii_lowercase();
            let weight = params
                .filter_map(|param| {
                    param
                        .trim()
                        .strip_prefix("q=")
                        .or_else(|| param.trim().strip_prefix("Q="))
                })
                .next()
                .map_or(1000, quality);
            (!name.is_empty() && weight > 0).then_some((name, weight))
        })
        .collect();
    if by_weight {
        members.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    } else {
        members.sort();
    }
    let mut names: Vec<String> = Vec::with_capacity(members.len());
    for (name, _) in members {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.join(",")
}

/// The coding of `preference` an `Accept-Encoding` value gets.
fn negotiated(value: &str, preference: &[&'static str]) -> &'static str {
    let mut weights: Vec<(String, u16)> = Vec::new();
    for member in value.split(',') {
        let mut params = member.split(';');
        let name = params.next().unwrap_or("").trim().to_ascii_lowercase();
        let weight = params
            .filter_map(|param| {
                let (key, value) = param.split_once('=')?;
                key.trim().eq_ignore_ascii_case("q").then(|| quality(value))
            })
            .next()
            .unwrap_or(1000);
        if !name.is_empty() {
            weights.push((name, weight));
        }
    }
    let weight_of = |coding: &str| {
        weights
            .iter()
            .filter(|(name, _)| name == coding)
            .map(|(_, weight)| *weight)
            .max()
            .or_else(|| {
                weights
                    .iter()
                    .find(|(name, _)| name == "*")
                    .map(|(_, weight)| *weight)
            })
    };
    let identity = weights
        .iter()
        .find(|(name, _)| name == "identity")
        .map_or(0, |(_, weight)| *weight);
    let mut best: Option<(&'static str, u16)> = None;
    for &coding in preference {
        if let Some(weight) = weight_of(coding).filter(|weight| *weight > 0) {
            if best.is_none_or(|(_, best_weight)| weight > best_weight) {
                best = Some((coding, weight));
            }
        }
    }
    match best {
        Some((coding, weight)) if weight >= identity => coding,
        _ => "identity",
    }
}

/// A qvalue in thousandths; anything unreadable counts as 1.
fn quality(text: &str) -> u16 {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let fraction = format!("{fraction:0<3}");
    match (
        whole,
        fraction
            .get(..3)
            .and_then(|digits| digits.parse::<u16>().ok()),
    ) {
        ("0", Some(thousandths)) => thousandths,
        ("0", None) => 0,
        _ => 1000,
    }
}

/// The field names a response's `Vary` lists, lowercase, without
/// duplicates (`*` is handled by the policy: such a response is not
/// stored).
pub(crate) fn vary_names(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(VARY) {
        let Ok(text) = value.to_str() else { continue };
        for name in text.split(',') {
            if let Ok(name) = HeaderName::from_bytes(name.trim().as_bytes()) {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    names
}

/// The request fields a stored response varies on, with the values the
/// request that got it had (`None`: the field was absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Variant {
    pub(crate) fields: Vec<(HeaderName, Option<String>)>,
}

/// How request fields are compared: the normalisers by field.
#[derive(Debug, Clone, Default)]
pub(crate) struct VaryRules {
    normalizers: Vec<(HeaderName, VaryNormalizer)>,
}

impl VaryRules {
    pub(crate) fn with(mut self, name: HeaderName, normalizer: VaryNormalizer) -> VaryRules {
        self.normalizers.retain(|(existing, _)| existing != name);
        self.normalizers.push((name, normalizer));
        self
    }

    /// A request field's value in comparable form: field lines combined
    /// with commas, whitespace around list members dropped, then the
    /// field's normaliser if it has one.
    fn value(&self, request: &HeaderMap, name: &HeaderName) -> Option<String> {
        let mut lines = request.get_all(name).iter().peekable();
        lines.peek()?;
        let mut combined = String::new();
        for line in lines {
            for member in String::from_utf8_lossy(line.as_bytes()).split(',') {
                if !combined.is_empty() {
                    combined.push(',');
                }
                combined.push_str(&collapse_whitespace(member));
            }
        }
        Some(
            match self.normalizers.iter().find(|(field, _)| field == name) {
                Some((_, normalize)) => normalize.apply(&combined),
                None => combined,
            },
        )
    }

    /// The variant a response with `vary` names makes for `request`.
    pub(crate) fn variant(&self, names: Vec<HeaderName>, request: &HeaderMap) -> Variant {
        let fields = names
            .into_iter()
            .map(|name| {
                let value = self.value(request, &name);
                (name, value)
            })
            .collect();
        Variant { fields }
    }

    /// Whether `variant` was stored for requests like `request`.
    pub(crate) fn matches(&self, variant: &Variant, request: &HeaderMap) -> bool {
        variant
            .fields
            .iter()
            .all(|(name, stored)| self.value(request, name).as_deref() == stored.as_deref())
    }
}

impl Variant {
    /// Whether two variants answer the same requests (a new response
    /// replaces the old one).
    pub(crate) fn same_as(&self, other: &Variant) -> bool {
        self == other
    }

    /// The variant as bytes: equal exactly when [`same_as`](Self::same_as)
    /// holds (every part length-prefixed, so no two read the same).
    pub(crate) fn id(&self) -> Vec<u8> {
        let mut id = Vec::new();
        let mut part = |bytes: &[u8]| {
            id.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            id.extend_from_slice(bytes);
        };
        for (name, value) in &self.fields {
            part(name.as_str().as_bytes());
            match value {
                Some(value) => part(value.as_bytes()),
                None => part(b"\xff absent"),
            }
        }
        id
    }

    /// Size of the variant's data, for the store's byte budget.
    pub(crate) fn weight(&self) -> usize {
        self.fields
            .iter()
            .map(|(name, value)| name.as_str().len() + value.as_ref().map_or(0, String::len))
            .sum()
    }
}

/// Trims a list member and turns each run of spaces and tabs into one
/// space.
fn collapse_whitespace(member: &str) -> String {
    let mut out = String::with_capacity(member.len());
    for word in member.split([' ', '\t']).filter(|word| !word.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cache::test_headers as headers;

    #[test]
    fn vary_lists_are_combined_and_deduplicated() {
        let response = headers(&[
            ("vary", "Accept, accept-language"),
            ("vary", " Accept ,Cookie"),
        ]);
        let names: Vec<String> = vary_names(&response)
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, ["accept", "accept-language", "cookie"]);
    }

    #[test]
    fn repeated_fields_and_whitespace_do_not_change_a_match() {
        let rules = VaryRules::default();
        let stored = rules.variant(
            vec![HeaderName::from_static("foo")],
            &headers(&[("foo", "a"), ("foo", "b")]),
        );
        assert!(rules.matches(&stored, &headers(&[("foo", "a, b")])));
        assert!(rules.matches(&stored, &headers(&[("foo", "a,   b")])));
        assert!(!rules.matches(&stored, &headers(&[("foo", "a")])));
        assert!(!rules.matches(&stored, &headers(&[("foo", "b, a")])));
    }

    #[test]
    fn an_absent_field_matches_only_an_absent_field() {
        let rules = VaryRules::default();
        let name = HeaderName::from_static("foo");
        let absent = rules.variant(vec![name.clone()], &HeaderMap::new());
        assert!(rules.matches(&absent, &HeaderMap::new()));
        assert!(!rules.matches(&absent, &headers(&[("foo", "")])));
        let empty = rules.variant(vec![name], &headers(&[("foo", "")]));
        assert!(!rules.matches(&empty, &HeaderMap::new()));
    }

    #[test]
    fn normalisers_merge_equivalent_requests() {
        let rules = VaryRules::default()
            .with(
                http::header::ACCEPT_ENCODING,
                VaryNormalizer::accept_encoding(),
            )
            .with(
                http::header::ACCEPT_LANGUAGE,
                VaryNormalizer::accept_language(),
            );
        let names = vec![http::header::ACCEPT_ENCODING, http::header::ACCEPT_LANGUAGE];
        let stored = rules.variant(
            names,
            &headers(&[
                ("accept-encoding", "gzip, br"),
                ("accept-language", "en-GB, fr;q=0.5"),
            ]),
        );
        assert!(rules.matches(
            &stored,
            &headers(&[
                ("accept-encoding", "br,GZIP, zstd;q=0"),
                ("accept-language", "EN-gb,fr;q=0.5")
            ])
        ));
        assert!(!rules.matches(
            &stored,
            &headers(&[
                ("accept-encoding", "gzip"),
                ("accept-language", "en-GB, fr;q=0.5")
            ])
        ));
        // Language order is preference: a different first choice is another variant.
        assert!(!rules.matches(
            &stored,
            &headers(&[
                ("accept-encoding", "gzip, br"),
                ("accept-language", "fr, en-GB;q=0.5")
            ])
        ));
    }

    #[test]
    fn negotiated_codings_follow_weights_then_the_server_order() {
        let normalize = VaryNormalizer::negotiated_coding(["zstd", "br", "gzip"]);
        assert_eq!(normalize.apply("gzip, br"), "br");
        assert_eq!(normalize.apply("GZIP"), "gzip");
        assert_eq!(normalize.apply("br;q=0.5, gzip"), "gzip");
        assert_eq!(normalize.apply("*"), "zstd");
        assert_eq!(normalize.apply("*, zstd;q=0"), "br");
        assert_eq!(normalize.apply("identity;q=1, gzip;q=0.5"), "identity");
        assert_eq!(normalize.apply("gzip;q=0"), "identity");
        assert_eq!(normalize.apply(""), "identity");
    }

    #[test]
    fn whitespace_collapses_to_single_spaces() {
        assert_eq!(collapse_whitespace("  a \t  b  "), "a b");
        assert_eq!(collapse_whitespace(""), "");
        assert_eq!(
            format!("{:?}", VaryNormalizer::accept_encoding()),
            "VaryNormalizer(..)"
        );
    }

    #[test]
    fn a_variant_weighs_its_names_and_values() {
        let rules = VaryRules::default();
        let names = vec![
            HeaderName::from_static("accept"),
            HeaderName::from_static("x-absent"),
        ];
        let variant = rules.variant(names, &headers(&[("accept", "text/html")]));
        assert_eq!(
            variant.weight(),
            "accept".len() + "text/html".len() + "x-absent".len()
        );
        assert!(variant.same_as(&variant.clone()));
        assert!(!variant.same_as(&Variant::default()));
    }

    #[test]
    fn weights_are_read_as_qvalues() {
        assert_eq!(quality("0"), 0);
        assert_eq!(quality("0.000"), 0);
        assert_eq!(quality("0.5"), 500);
        assert_eq!(quality("0.05"), 50);
        assert_eq!(quality("1"), 1000);
        assert_eq!(quality("junk"), 1000);
        // A weight that starts "0." but is not digits is read as 0.
        assert_eq!(quality("0.x"), 0);
        assert_eq!(
            VaryNormalizer::accept_language().apply("de;q=0.1, en;q=0.9, fr"),
            "fr,en,de"
        );
    }
}
