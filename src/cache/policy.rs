//! The RFC 9111 rules, with no I/O: whether a response may be stored
//! (§3), how long it stays fresh (§4.2.1, heuristics §4.2.2), its age
//! (§4.2.3), and whether a stored response may answer a request (§4.2,
//! §4.2.4, §5.2.1) or must be validated first.
//!
//! Times are wall-clock milliseconds since the Unix epoch ([`Millis`]), read
//! from the cache's [`Clock`](super::clock::Clock).

use http::header::{AGE, AUTHORIZATION, DATE, EXPIRES, LAST_MODIFIED, PRAGMA, SET_COOKIE, VARY};
use http::{HeaderMap, Method, StatusCode};

use super::date;
use super::directives::{CacheControl, delta_seconds};
use super::targeted;

/// Milliseconds since the Unix epoch.
pub(crate) type Millis = i64;

const SECOND: Millis = 1000;

/// Which cache the layer is: RFC 9111 gives shared caches stricter rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// A cache serving many users: a server's or a reverse proxy's (the
    /// default). `private` responses are not stored, `s-maxage` and
    /// `proxy-revalidate` apply, and a request's `Authorization` makes the
    /// response unstorable unless the response allows it (§3.5).
    #[default]
    Shared,
    /// A cache serving one user: inside a client stack. `private` responses
    /// are stored; `s-maxage` and `proxy-revalidate` do not apply.
    Private,
}

/// The settings the rules read, fixed when the layer is built.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) mode: CacheMode,
    /// Heuristic freshness as a fraction of the time since `Last-Modified`
    /// (RFC 9111 §4.2.2 suggests 10%), capped at `heuristic_max`.
    pub(crate) heuristic_percent: u32,
    pub(crate) heuristic_max: Millis,
    /// Store responses carrying `Set-Cookie` in shared mode (the cookie is
    /// never stored either way).
    pub(crate) store_set_cookie: bool,
    /// A stale window the server grants itself when the response names
    /// none: `stale-while-revalidate` and `stale-if-error` defaults.
    pub(crate) default_stale_while_revalidate: Millis,
    pub(crate) default_stale_if_error: Millis,
    /// Targeted fields (RFC 9213) this cache obeys, in order of precedence.
    pub(crate) targeted_fields: Vec<http::HeaderName>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            mode: CacheMode::Shared,
            heuristic_percent: 10,
            heuristic_max: 24 * 3600 * SECOND,
            store_set_cookie: false,
            default_stale_while_revalidate: 0,
            default_stale_if_error: 0,
            targeted_fields: Vec::new(),
        }
    }
}

/// Why a response was not stored (the `detail` of `Cache-Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotStorable {
    /// The request method is not one whose responses are stored.
    Method,
    /// The status is interim, partial, 304, or not understood while
    /// `must-understand` is present.
    Status,
    /// `no-store` on the request or the response.
    NoStore,
    /// `private` in a shared cache.
    Private,
    /// The request carried `Authorization` and the response did not allow
    /// storing it (§3.5).
    Authorization,
    /// `Vary: *`: no later request can be known to match.
    VaryAny,
    /// `Set-Cookie` in a shared cache that was not told to store it.
    SetCookie,
    /// No freshness, no validator: storing it could never save a request.
    NoFreshness,
    /// Larger than the cache's entry size limit.
    TooLarge,
}

impl NotStorable {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            NotStorable::Method => "method",
            NotStorable::Status => "status",
            NotStorable::NoStore => "no-store",
            NotStorable::Private => "private",
            NotStorable::Authorization => "authorization",
            NotStorable::VaryAny => "vary-any",
            NotStorable::SetCookie => "set-cookie",
            NotStorable::NoFreshness => "no-freshness",
            NotStorable::TooLarge => "too-large",
        }
    }
}

/// RFC 9110 §15.1: statuses cacheable by default, so heuristics may apply.
pub(crate) fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Statuses whose caching semantics this cache implements, for
/// `must-understand` (RFC 9111 §5.2.2.3).
fn understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 302 | 303 | 307 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// The request side of a lookup: its directives, read once.
#[derive(Debug, Default)]
pub(crate) struct RequestDirectives {
    pub(crate) cache_control: CacheControl,
    /// `no-cache`, or `Pragma: no-cache` with no `Cache-Control` (§5.4).
    pub(crate) no_cache: bool,
}

impl RequestDirectives {
    pub(crate) fn from_headers(headers: &HeaderMap) -> RequestDirectives {
        let cache_control = CacheControl::from_headers(headers);
        // Most requests carry neither field: one lookup each, no more.
        let pragma_no_cache = headers.get(http::header::CACHE_CONTROL).is_none()
            && headers.contains_key(PRAGMA)
            && headers.get_all(PRAGMA).iter().any(|value| {
                value.to_str().is_ok_and(|text| {
                    text.split(',')
                        .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
                })
            });
        RequestDirectives {
            no_cache: cache_control.no_cache() || pragma_no_cache,
            cache_control,
        }
    }
}

impl Policy {
    fn shared(&self) -> bool {
        self.mode == CacheMode::Shared
    }

    /// The directives that govern a response for this cache: the first
    /// valid targeted field's, else `Cache-Control`'s.
    pub(crate) fn response_directives(&self, headers: &HeaderMap) -> CacheControl {
        targeted::directives(headers, &self.targeted_fields)
            .unwrap_or_else(|| CacheControl::from_headers(headers))
    }

    /// RFC 9111 §3: may this response to this request be stored?
    pub(crate) fn storable(
        &self,
        method: &Method,
        request_headers: &HeaderMap,
        request: &RequestDirectives,
        status: StatusCode,
        headers: &HeaderMap,
        response: &CacheControl,
    ) -> Result<(), NotStorable> {
        if method != Method::GET {
            return Err(NotStorable::Method);
        }
        let final_status = !status.is_informational()
            && status != StatusCode::PARTIAL_CONTENT
            && status != StatusCode::NOT_MODIFIED;
        if !final_status {
            return Err(NotStorable::Status);
        }
        if response.must_understand() {
            // must-understand overrides no-store for the statuses we know.
            if !understood(status) {
                return Err(NotStorable::Status);
            }
        } else if response.no_store() {
            return Err(NotStorable::NoStore);
        }
        if request.cache_control.no_store() {
            return Err(NotStorable::NoStore);
        }
        if self.shared() && response.private() && response.private_fields().is_none() {
            return Err(NotStorable::Private);
        }
        if self.shared()
            && request_headers.contains_key(AUTHORIZATION)
            && !(response.must_revalidate() || response.public() || response.s_maxage().is_some())
        {
            return Err(NotStorable::Authorization);
        }
        if vary_any(headers) {
            return Err(NotStorable::VaryAny);
        }
        if self.shared() && !self.store_set_cookie && headers.contains_key(SET_COOKIE) {
            return Err(NotStorable::SetCookie);
        }
        let explicit = response.public()
            || (response.private() && !self.shared())
            || (!response.is_targeted() && headers.contains_key(EXPIRES))
            || response.max_age().is_some()
            || (self.shared() && response.s_maxage().is_some());
        if !explicit && !heuristically_cacheable(status) {
            return Err(NotStorable::Status);
        }
        Ok(())
    }

    /// The freshness of a response received at `response_time` for a
    /// request sent at `request_time`, as stored with it.
    pub(crate) fn freshness(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        response: &CacheControl,
        request_time: Millis,
        response_time: Millis,
    ) -> Freshness {
        let date = header_date(headers, DATE).map(|seconds| seconds.saturating_mul(SECOND));
        let date_value = date.unwrap_or(response_time);
        let lifetime = self.lifetime(status, headers, response, date_value);
        let (stale_while_revalidate, stale_if_error) =
            if response.has("stale-while-revalidate") || response.has("stale-if-error") {
                (
                    seconds(response.stale_while_revalidate().unwrap_or(0)),
                    seconds(response.stale_if_error().unwrap_or(0)),
                )
            } else {
                (
                    self.default_stale_while_revalidate,
                    self.default_stale_if_error,
                )
            };
        // §4.2.3, with every term at least 0.
        let apparent_age = (response_time - date_value).max(0);
        let response_delay = (response_time - request_time).max(0);
        let age_value = age(headers).map_or(0, seconds);
        let initial_age = apparent_age.max(age_value.saturating_add(response_delay));
        let no_stale = response.must_revalidate()
            || (self.shared() && (response.proxy_revalidate() || response.s_maxage().is_some()));
        Freshness {
            request_time,
            response_time,
            initial_age,
            lifetime,
            stale_while_revalidate,
            stale_if_error,
            always_validate: response.no_cache() && response.no_cache_fields().is_none(),
            no_stale,
        }
    }

    /// §4.2.1: the first of s-maxage (shared), max-age, Expires − Date,
    /// then a heuristic (§4.2.2) when Last-Modified is known and the status
    /// allows it or `public` is present.
    fn lifetime(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        response: &CacheControl,
        date_value: Millis,
    ) -> Millis {
        if self.shared() {
            if let Some(s_maxage) = response.s_maxage() {
                return seconds(s_maxage);
            }
        }
        if let Some(max_age) = response.max_age() {
            return seconds(max_age);
        }
        if let Some(expires) = headers.get(EXPIRES).filter(|_| !response.is_targeted()) {
            // An invalid Expires (e.g. "0") means already expired.
            let expires = expires.to_str().ok().and_then(date::parse);
            return expires.map_or(0, |at| (at.saturating_mul(SECOND) - date_value).max(0));
        }
        if heuristically_cacheable(status) || response.public() {
            if let Some(last_modified) = header_date(headers, LAST_MODIFIED) {
                let since = (date_value - last_modified.saturating_mul(SECOND)).max(0);
                let heuristic = since / 100 * Millis::from(self.heuristic_percent);
                return heuristic.min(self.heuristic_max);
            }
        }
        0
    }

    /// §4.2, §4.2.4, §5.2.1: how a stored response with `freshness` may
    /// answer a request with `request`'s directives at `now`.
    pub(crate) fn usable(
        &self,
        freshness: &Freshness,
        request: &RequestDirectives,
        now: Millis,
    ) -> Usable {
        let age = freshness.age(now);
        let directives = &request.cache_control;
        if request.no_cache || freshness.always_validate {
            return Usable::Validate;
        }
        if directives
            .max_age()
            .is_some_and(|max_age| age > seconds(max_age))
        {
            return Usable::Validate;
        }
        let fresh_left = freshness.lifetime - age;
        if fresh_left > 0 {
            if directives
                .min_fresh()
                .is_some_and(|min_fresh| seconds(min_fresh) > fresh_left)
            {
                return Usable::Validate;
            }
            return Usable::Fresh;
        }
        if freshness.no_stale {
            return Usable::Validate;
        }
        let staleness = -fresh_left;
        match directives.max_stale() {
            Some(None) => return Usable::Stale(StaleUse::MaxStale),
            Some(Some(limit)) if staleness <= seconds(limit) => {
                return Usable::Stale(StaleUse::MaxStale);
            }
            _ => {}
        }
        if staleness < freshness.stale_while_revalidate {
            return Usable::Stale(StaleUse::WhileRevalidate);
        }
        Usable::Validate
    }
}

/// How a stored response may be used for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usable {
    /// Fresh: serve it.
    Fresh,
    /// Stale, but allowed: serve it.
    Stale(StaleUse),
    /// Ask the origin first (conditionally when a validator is stored).
    Validate,
}

/// Why a stale response may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StaleUse {
    /// The request's `max-stale` accepts it.
    MaxStale,
    /// Inside `stale-while-revalidate`: serve it and revalidate behind.
    WhileRevalidate,
}

/// A stored response's freshness, fixed when it was received (and again
/// when a 304 refreshes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Freshness {
    pub(crate) request_time: Millis,
    pub(crate) response_time: Millis,
    /// `corrected_initial_age` of §4.2.3.
    pub(crate) initial_age: Millis,
    /// `freshness_lifetime` of §4.2.1.
    pub(crate) lifetime: Millis,
    pub(crate) stale_while_revalidate: Millis,
    pub(crate) stale_if_error: Millis,
    /// `no-cache` without field names: validate before every use.
    pub(crate) always_validate: bool,
    /// `must-revalidate`, or in a shared cache `proxy-revalidate` or
    /// `s-maxage`: never serve it stale.
    pub(crate) no_stale: bool,
}

impl Freshness {
    /// `current_age` of §4.2.3.
    pub(crate) fn age(&self, now: Millis) -> Millis {
        self.initial_age
            .saturating_add((now - self.response_time).max(0))
    }

    /// Time left fresh (negative once stale).
    pub(crate) fn fresh_left(&self, now: Millis) -> Millis {
        self.lifetime - self.age(now)
    }

    /// Whether `stale-if-error` lets it answer for a failed origin now.
    pub(crate) fn usable_on_error(&self, now: Millis) -> bool {
        let staleness = -self.fresh_left(now);
        !self.no_stale && !self.always_validate && staleness >= 0 && staleness < self.stale_if_error
    }

    /// When the entry stops being useful, even to validate: the end of its
    /// freshness and stale windows, with `keep` more for entries that can
    /// be revalidated.
    pub(crate) fn usable_until(&self, keep: Millis) -> Millis {
        let born = self.response_time - self.initial_age;
        let stale_window = self.stale_while_revalidate.max(self.stale_if_error);
        born.saturating_add(self.lifetime.max(0))
            .saturating_add(stale_window)
            .saturating_add(keep)
    }
}

/// Seconds as [`Millis`].
fn seconds(seconds: u32) -> Millis {
    Millis::from(seconds) * SECOND
}

/// `Age` (§5.1): the first value of the first field line, as delta-seconds
/// capped at 2^31; anything else is ignored.
pub(crate) fn age(headers: &HeaderMap) -> Option<u32> {
    let text = headers.get(AGE)?.to_str().ok()?;
    let first = text.split(',').next()?.trim_matches([' ', '\t']);
    delta_seconds(first).ok()
}

fn header_date(headers: &HeaderMap, name: http::HeaderName) -> Option<i64> {
    headers.get(name)?.to_str().ok().and_then(date::parse)
}

/// Whether any `Vary` field line lists `*`.
pub(crate) fn vary_any(headers: &HeaderMap) -> bool {
    headers.get_all(VARY).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|text| text.split(',').any(|name| name.trim() == "*"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::MAX_DELTA_SECONDS;

    const NOW: Millis = 1_790_000_000 * SECOND;

    use crate::cache::test_headers as headers;

    fn date_at(at: Millis) -> String {
        date::format(at / SECOND)
    }

    fn freshness_of(policy: &Policy, status: u16, pairs: &[(&str, &str)]) -> Freshness {
        let headers = headers(pairs);
        let cc = CacheControl::from_headers(&headers);
        policy.freshness(
            StatusCode::from_u16(status).unwrap(),
            &headers,
            &cc,
            NOW,
            NOW,
        )
    }

    fn storable_with(
        policy: &Policy,
        request: &[(&str, &str)],
        status: u16,
        response: &[(&str, &str)],
    ) -> Result<(), NotStorable> {
        let request = headers(request);
        let response = headers(response);
        policy.storable(
            &Method::GET,
            &request,
            &RequestDirectives::from_headers(&request),
            StatusCode::from_u16(status).unwrap(),
            &response,
            &CacheControl::from_headers(&response),
        )
    }

    fn private() -> Policy {
        Policy {
            mode: CacheMode::Private,
            ..Policy::default()
        }
    }

    #[test]
    fn lifetime_prefers_s_maxage_then_max_age_then_expires() {
        let shared = Policy::default();
        let both = [("cache-control", "max-age=60, s-maxage=600")];
        assert_eq!(freshness_of(&shared, 200, &both).lifetime, 600 * SECOND);
        assert_eq!(freshness_of(&private(), 200, &both).lifetime, 60 * SECOND);
        let expires = date_at(NOW + 300 * SECOND);
        let with_expires = [
            ("cache-control", "max-age=60"),
            ("expires", expires.as_str()),
        ];
        assert_eq!(
            freshness_of(&shared, 200, &with_expires).lifetime,
            60 * SECOND
        );
        let date = date_at(NOW - 100 * SECOND);
        let relative = [("expires", expires.as_str()), ("date", date.as_str())];
        // Expires is measured from Date, not from when it arrived.
        assert_eq!(freshness_of(&shared, 200, &relative).lifetime, 400 * SECOND);
    }

    #[test]
    fn an_invalid_expires_means_already_expired() {
        for value in ["0", "-1", "Thu, 18 Aug 2050 02:01:18 UTC", ""] {
            let fresh = freshness_of(&Policy::default(), 200, &[("expires", value)]);
            assert_eq!(fresh.lifetime, 0, "{value:?}");
        }
    }

    #[test]
    fn heuristics_need_last_modified_and_a_default_cacheable_status_or_public() {
        let policy = Policy::default();
        let modified = date_at(NOW - 1000 * SECOND);
        let last_modified = [("last-modified", modified.as_str())];
        assert_eq!(
            freshness_of(&policy, 200, &last_modified).lifetime,
            100 * SECOND
        );
        assert_eq!(
            freshness_of(&policy, 404, &last_modified).lifetime,
            100 * SECOND
        );
        assert_eq!(freshness_of(&policy, 201, &last_modified).lifetime, 0);
        assert_eq!(freshness_of(&policy, 599, &last_modified).lifetime, 0);
        let public = [
            ("last-modified", modified.as_str()),
            ("cache-control", "public"),
        ];
        assert_eq!(freshness_of(&policy, 599, &public).lifetime, 100 * SECOND);
        // No Last-Modified: no heuristic at all, public or not.
        assert_eq!(
            freshness_of(&policy, 200, &[("cache-control", "public")]).lifetime,
            0
        );
        // Capped.
        let long_ago = date_at(NOW - 100 * 24 * 3600 * SECOND);
        let capped = freshness_of(&policy, 200, &[("last-modified", long_ago.as_str())]);
        assert_eq!(capped.lifetime, policy.heuristic_max);
    }

    #[test]
    fn age_adds_transit_and_the_larger_of_header_and_date_skew() {
        let policy = Policy::default();
        let headers = headers(&[("age", "30"), ("cache-control", "max-age=100")]);
        let cc = CacheControl::from_headers(&headers);
        let sent = NOW - 2 * SECOND;
        let fresh = policy.freshness(StatusCode::OK, &headers, &cc, sent, NOW);
        // Age 30 + the 2 s the response took.
        assert_eq!(fresh.initial_age, 32 * SECOND);
        assert_eq!(fresh.age(NOW + 10 * SECOND), 42 * SECOND);
        // A Date 50 s old wins over a smaller Age.
        let old = date_at(NOW - 50 * SECOND);
        let headers = self::headers(&[("age", "30"), ("date", old.as_str())]);
        let fresh = policy.freshness(StatusCode::OK, &headers, &cc, NOW, NOW);
        assert_eq!(fresh.initial_age, 50 * SECOND);
        // A Date in the future counts as no skew.
        let ahead = date_at(NOW + 50 * SECOND);
        let headers = self::headers(&[("date", ahead.as_str())]);
        assert_eq!(
            policy
                .freshness(StatusCode::OK, &headers, &cc, NOW, NOW)
                .initial_age,
            0
        );
    }

    #[test]
    fn age_reads_the_first_value_and_ignores_what_is_not_delta_seconds() {
        assert_eq!(age(&headers(&[("age", "7200")])), Some(7200));
        assert_eq!(age(&headers(&[("age", "7200, 10")])), Some(7200));
        assert_eq!(age(&headers(&[("age", "10"), ("age", "7200")])), Some(10));
        assert_eq!(
            age(&headers(&[("age", "99999999999999")])),
            Some(MAX_DELTA_SECONDS)
        );
        for value in ["abc", "-7200", "7200.0", "", " "] {
            assert_eq!(age(&headers(&[("age", value)])), None, "{value:?}");
        }
        assert_eq!(age(&headers(&[])), None);
    }

    #[test]
    fn storing_follows_section_3() {
        let shared = Policy::default();
        let fresh = [("cache-control", "max-age=60")];
        assert_eq!(storable_with(&shared, &[], 200, &fresh), Ok(()));
        assert_eq!(
            storable_with(&shared, &[], 206, &fresh),
            Err(NotStorable::Status)
        );
        assert_eq!(
            storable_with(&shared, &[], 304, &fresh),
            Err(NotStorable::Status)
        );
        assert_eq!(
            storable_with(
                &shared,
                &[],
                200,
                &[("cache-control", "max-age=60, no-store")]
            ),
            Err(NotStorable::NoStore)
        );
        assert_eq!(
            storable_with(&shared, &[("cache-control", "no-store")], 200, &fresh),
            Err(NotStorable::NoStore)
        );
        let private_response = [("cache-control", "private, max-age=60")];
        assert_eq!(
            storable_with(&shared, &[], 200, &private_response),
            Err(NotStorable::Private)
        );
        assert_eq!(
            storable_with(&private(), &[], 200, &private_response),
            Ok(())
        );
        // private="field" is stored without that field.
        assert_eq!(
            storable_with(
                &shared,
                &[],
                200,
                &[("cache-control", "private=\"x-user\", max-age=60")]
            ),
            Ok(())
        );
        assert_eq!(
            storable_with(&shared, &[], 200, &[("vary", "accept, *"), fresh[0]]),
            Err(NotStorable::VaryAny)
        );
        // 201 has no default cacheability; explicit freshness makes it storable.
        assert_eq!(
            storable_with(&shared, &[], 201, &[]),
            Err(NotStorable::Status)
        );
        assert_eq!(storable_with(&shared, &[], 201, &fresh), Ok(()));
        let expires = [("expires", "Thu, 01 Jan 2099 00:00:00 GMT")];
        assert_eq!(storable_with(&shared, &[], 201, &expires), Ok(()));
        assert_eq!(
            storable_with(&shared, &[], 201, &[("cache-control", "public")]),
            Ok(())
        );
        assert_eq!(
            storable_with(&shared, &[], 201, &[("cache-control", "s-maxage=5")]),
            Ok(())
        );
        // `private` counts as explicit in a private cache only; s-maxage in a shared one only.
        assert_eq!(
            storable_with(&private(), &[], 201, &[("cache-control", "private")]),
            Ok(())
        );
        assert_eq!(
            storable_with(&private(), &[], 201, &[("cache-control", "s-maxage=5")]),
            Err(NotStorable::Status)
        );
        assert_eq!(storable_with(&shared, &[], 500, &fresh), Ok(()));
    }

    #[test]
    fn authorization_needs_the_response_to_allow_a_shared_cache() {
        let shared = Policy::default();
        let auth = [("authorization", "Bearer x")];
        assert_eq!(
            storable_with(&shared, &auth, 200, &[("cache-control", "max-age=60")]),
            Err(NotStorable::Authorization)
        );
        for allowing in [
            "max-age=60, public",
            "s-maxage=60",
            "max-age=60, must-revalidate",
        ] {
            assert_eq!(
                storable_with(&shared, &auth, 200, &[("cache-control", allowing)]),
                Ok(()),
                "{allowing}"
            );
        }
        assert_eq!(
            storable_with(&private(), &auth, 200, &[("cache-control", "max-age=60")]),
            Ok(())
        );
    }

    #[test]
    fn set_cookie_is_not_stored_by_a_shared_cache_unless_allowed() {
        let cookie = [("cache-control", "max-age=60"), ("set-cookie", "id=1")];
        assert_eq!(
            storable_with(&Policy::default(), &[], 200, &cookie),
            Err(NotStorable::SetCookie)
        );
        let allowed = Policy {
            store_set_cookie: true,
            ..Policy::default()
        };
        assert_eq!(storable_with(&allowed, &[], 200, &cookie), Ok(()));
        assert_eq!(storable_with(&private(), &[], 200, &cookie), Ok(()));
    }

    #[test]
    fn a_targeted_field_makes_expires_count_for_nothing() {
        let policy = Policy {
            targeted_fields: vec![http::HeaderName::from_static("cdn-cache-control")],
            ..Policy::default()
        };
        let response = headers(&[
            ("cdn-cache-control", "no-cache"),
            ("expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
        ]);
        let directives = policy.response_directives(&response);
        let verdict = policy.storable(
            &Method::GET,
            &HeaderMap::new(),
            &RequestDirectives::default(),
            StatusCode::CREATED,
            &response,
            &directives,
        );
        assert_eq!(verdict, Err(NotStorable::Status));
        let fresh = policy.freshness(StatusCode::OK, &response, &directives, NOW, NOW);
        assert_eq!(fresh.lifetime, 0);
        assert!(fresh.always_validate);
    }

    #[test]
    fn must_understand_overrides_no_store_only_for_known_statuses() {
        let policy = Policy::default();
        let header = [("cache-control", "must-understand, no-store, max-age=60")];
        assert_eq!(storable_with(&policy, &[], 200, &header), Ok(()));
        assert_eq!(
            storable_with(&policy, &[], 299, &header),
            Err(NotStorable::Status)
        );
    }

    #[test]
    fn only_get_responses_are_stored() {
        let headers = headers(&[("cache-control", "max-age=60")]);
        let cc = CacheControl::from_headers(&headers);
        for method in [Method::HEAD, Method::POST, Method::PUT] {
            let result = Policy::default().storable(
                &method,
                &HeaderMap::new(),
                &RequestDirectives::default(),
                StatusCode::OK,
                &headers,
                &cc,
            );
            assert_eq!(result, Err(NotStorable::Method));
        }
    }

    fn usable(
        policy: &Policy,
        response: &[(&str, &str)],
        request: &[(&str, &str)],
        after: Millis,
    ) -> Usable {
        let fresh = freshness_of(policy, 200, response);
        policy.usable(
            &fresh,
            &RequestDirectives::from_headers(&headers(request)),
            NOW + after,
        )
    }

    #[test]
    fn fresh_until_the_lifetime_then_validate() {
        let policy = Policy::default();
        let response = [("cache-control", "max-age=10")];
        assert_eq!(usable(&policy, &response, &[], 9_999), Usable::Fresh);
        assert_eq!(usable(&policy, &response, &[], 10_000), Usable::Validate);
        assert_eq!(
            usable(
                &policy,
                &[("cache-control", "max-age=10, no-cache")],
                &[],
                0
            ),
            Usable::Validate
        );
    }

    #[test]
    fn request_directives_narrow_or_widen_what_is_acceptable() {
        let policy = Policy::default();
        let response = [("cache-control", "max-age=100")];
        assert_eq!(
            usable(&policy, &response, &[("cache-control", "no-cache")], 0),
            Usable::Validate
        );
        assert_eq!(
            usable(&policy, &response, &[("pragma", "no-cache")], 0),
            Usable::Validate
        );
        // Pragma is ignored when Cache-Control is present.
        assert_eq!(
            usable(
                &policy,
                &response,
                &[("pragma", "no-cache"), ("cache-control", "max-stale")],
                0
            ),
            Usable::Fresh
        );
        assert_eq!(
            usable(&policy, &response, &[("cache-control", "max-age=5")], 5_000),
            Usable::Fresh
        );
        assert_eq!(
            usable(&policy, &response, &[("cache-control", "max-age=5")], 6_000),
            Usable::Validate
        );
        assert_eq!(
            usable(
                &policy,
                &response,
                &[("cache-control", "min-fresh=50")],
                40_000
            ),
            Usable::Fresh
        );
        assert_eq!(
            usable(
                &policy,
                &response,
                &[("cache-control", "min-fresh=50")],
                60_000
            ),
            Usable::Validate
        );
        // Exactly min-fresh seconds left is fresh enough.
        assert_eq!(
            usable(
                &policy,
                &response,
                &[("cache-control", "min-fresh=50")],
                50_000
            ),
            Usable::Fresh
        );
        let max_stale = [("cache-control", "max-stale=10")];
        assert_eq!(
            usable(&policy, &response, &max_stale, 110_000),
            Usable::Stale(StaleUse::MaxStale)
        );
        assert_eq!(
            usable(&policy, &response, &max_stale, 111_000),
            Usable::Validate
        );
        let any_stale = [("cache-control", "max-stale")];
        assert_eq!(
            usable(&policy, &response, &any_stale, 1_000_000_000),
            Usable::Stale(StaleUse::MaxStale)
        );
    }

    #[test]
    fn max_stale_never_overrides_what_forbids_stale() {
        let shared = Policy::default();
        let any_stale = [("cache-control", "max-stale")];
        for forbidding in [
            "max-age=1, must-revalidate",
            "max-age=1, proxy-revalidate",
            "s-maxage=1",
            "max-age=1, no-cache",
        ] {
            assert_eq!(
                usable(&shared, &[("cache-control", forbidding)], &any_stale, 5_000),
                Usable::Validate,
                "{forbidding}"
            );
        }
        // proxy-revalidate and s-maxage bind shared caches only.
        assert_eq!(
            usable(
                &private(),
                &[("cache-control", "max-age=1, proxy-revalidate")],
                &any_stale,
                5_000
            ),
            Usable::Stale(StaleUse::MaxStale)
        );
    }

    #[test]
    fn stale_while_revalidate_and_stale_if_error_have_windows() {
        let policy = Policy::default();
        let response = [(
            "cache-control",
            "max-age=10, stale-while-revalidate=20, stale-if-error=60",
        )];
        assert_eq!(
            usable(&policy, &response, &[], 29_999),
            Usable::Stale(StaleUse::WhileRevalidate)
        );
        assert_eq!(usable(&policy, &response, &[], 30_000), Usable::Validate);
        let fresh = freshness_of(&policy, 200, &response);
        assert!(fresh.usable_on_error(NOW + 69_999));
        assert!(!fresh.usable_on_error(NOW + 70_000));
        let forbidden = freshness_of(
            &policy,
            200,
            &[(
                "cache-control",
                "max-age=10, must-revalidate, stale-if-error=60",
            )],
        );
        assert!(!forbidden.usable_on_error(NOW + 11_000));
        // Defaults apply only when the response names no window.
        let graceful = Policy {
            default_stale_if_error: 5 * SECOND,
            default_stale_while_revalidate: 7 * SECOND,
            ..Policy::default()
        };
        let plain = freshness_of(&graceful, 200, &[("cache-control", "max-age=10")]);
        assert_eq!(
            (plain.stale_while_revalidate, plain.stale_if_error),
            (7 * SECOND, 5 * SECOND)
        );
        let named = freshness_of(
            &graceful,
            200,
            &[("cache-control", "max-age=10, stale-if-error=1")],
        );
        assert_eq!(
            (named.stale_while_revalidate, named.stale_if_error),
            (0, SECOND)
        );
        assert_eq!(named.usable_until(0), NOW + 11 * SECOND);
        assert_eq!(named.usable_until(3 * SECOND), NOW + 14 * SECOND);
        // An entry that arrived 4 s old has 4 s less to live.
        let aged = freshness_of(
            &policy,
            200,
            &[
                ("cache-control", "max-age=10, stale-if-error=1"),
                ("age", "4"),
            ],
        );
        assert_eq!(aged.usable_until(0), NOW + 7 * SECOND);
    }

    fn header_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just("max-age=".to_owned()),
            Just("s-maxage=".to_owned()),
            Just("no-cache".to_owned()),
            Just("must-revalidate".to_owned()),
            Just("stale-while-revalidate=".to_owned()),
            Just(", ".to_owned()),
            Just("\"".to_owned()),
            "[0-9]{1,12}",
            "[ -~]{0,6}",
        ];
        proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
    }

    proptest::proptest! {
        #[test]
        fn no_header_bytes_panic_or_outlive_an_explicit_max_age(
            cache_control in header_text(),
            age in "[ -~]{0,12}",
            date in "[ -~]{0,30}",
            expires in "[ -~]{0,30}",
            shared in proptest::bool::ANY,
        ) {
            let policy = if shared { Policy::default() } else { private() };
            let mut map = HeaderMap::new();
            for (name, value) in [("cache-control", &cache_control), ("age", &age), ("date", &date), ("expires", &expires)] {
                if let Ok(value) = http::HeaderValue::from_str(value) {
                    map.insert(http::HeaderName::from_static(name), value);
                }
            }
            let directives = CacheControl::from_headers(&map);
            let fresh = policy.freshness(StatusCode::OK, &map, &directives, NOW, NOW);
            let explicit = if shared { directives.s_maxage().or(directives.max_age()) } else { directives.max_age() };
            if let Some(limit) = explicit {
                proptest::prop_assert!(fresh.lifetime <= seconds(limit));
            }
            proptest::prop_assert!(fresh.lifetime >= 0 && fresh.initial_age >= 0);
            let _ = policy.usable(&fresh, &RequestDirectives::from_headers(&map), NOW + 1);
            let _ = policy.storable(&Method::GET, &map, &RequestDirectives::from_headers(&map), StatusCode::OK, &map, &directives);
        }
    }
}
