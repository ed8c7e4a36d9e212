//! HTTP-date (RFC 9110 §5.6.7): parsed in the three formats a recipient
//! must accept, names compared without case as real servers send them, and
//! the preferred format written for `Date` when a stored response lacks one.
//!
//! Times are whole seconds since the Unix epoch as `i64`, so dates far in
//! the future (`Expires` in 2286) and before 1970 stay representable.

/// Parses an HTTP-date; `None` for anything else (an invalid `Expires`
/// then means "already expired", as RFC 9111 §5.3 asks).
pub(crate) fn parse(text: &str) -> Option<i64> {
    let text = text.trim_matches([' ', '\t']);
    parse_imf_fixdate(text)
        .or_else(|| parse_rfc850(text))
        .or_else(|| parse_asctime(text))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn parse_imf_fixdate(text: &str) -> Option<i64> {
    let (day_name, rest) = text.split_once(", ")?;
    weekday(day_name, false)?;
    let mut parts = rest.split(' ');
    let day = two_digits(parts.next()?)?;
    let month = month(parts.next()?)?;
    let year = four_digits(parts.next()?)?;
    let seconds = time_of_day(parts.next()?)?;
    gmt(parts.next()?)?;
    if parts.next().is_some() {
        return None;
    }
    to_epoch(year, month, day, seconds)
}

/// `Sunday, 06-Nov-94 08:49:37 GMT` (obsolete; two-digit year).
fn parse_rfc850(text: &str) -> Option<i64> {
    let (day_name, rest) = text.split_once(", ")?;
    weekday(day_name, true)?;
    let mut parts = rest.split(' ');
    let mut date = parts.next()?.split('-');
    let day = two_digits(date.next()?)?;
    let month = month(date.next()?)?;
    let short_year = two_digits(date.next()?)?;
    if date.next().is_some() {
        return None;
    }
    let seconds = time_of_day(parts.next()?)?;
    gmt(parts.next()?)?;
    if parts.next().is_some() {
        return None;
    }
    to_epoch(full_year(short_year), month, day, seconds)
}

/// `Sun Nov  6 08:49:37 1994` (asctime; the day padded with a space).
fn parse_asctime(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 24 {
        return None;
    }
    weekday(text.get(0..3)?, false)?;
    if bytes[3] != b' ' || bytes[7] != b' ' || bytes[10] != b' ' || bytes[19] != b' ' {
        return None;
    }
    let month = month(text.get(4..7)?)?;
    let day = match (bytes[8], bytes[9]) {
        (b' ', units) if units.is_ascii_digit() => u32::from(units - b'0'),
        _ => two_digits(text.get(8..10)?)?,
    };
    let seconds = time_of_day(text.get(11..19)?)?;
    let year = four_digits(text.get(20..24)?)?;
    to_epoch(year, month, day, seconds)
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const LONG_DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn weekday(name: &str, long: bool) -> Option<()> {
    let names: &[&str] = if long { &LONG_DAYS } else { &DAYS };
    names
        .iter()
        .any(|day| day.eq_ignore_ascii_case(name))
        .then_some(())
}

fn month(name: &str) -> Option<u32> {
    MONTHS
        .iter()
        .position(|month| month.eq_ignore_ascii_case(name))
        .map(|index| index as u32 + 1)
}

fn gmt(zone: &str) -> Option<()> {
    zone.eq_ignore_ascii_case("GMT").then_some(())
}

fn digits(text: &str, count: usize) -> Option<u32> {
    if text.len() != count || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn two_digits(text: &str) -> Option<u32> {
    digits(text, 2)
}

fn four_digits(text: &str) -> Option<u32> {
    digits(text, 4)
}

/// `HH:MM:SS` as seconds into the day (a leap second, `:60`, is allowed).
fn time_of_day(text: &str) -> Option<i64> {
    let mut parts = text.split(':');
    let hours = two_digits(parts.next()?)?;
    let minutes = two_digits(parts.next()?)?;
    let seconds = two_digits(parts.next()?)?;
    if parts.next().is_some() || hours > 23 || minutes > 59 || seconds > 60 {
        return None;
    }
    Some(i64::from(hours * 3600 + minutes * 60 + seconds))
}

/// RFC 9110 §5.6.7: a two-digit year more than 50 years in the future is
/// the most recent past year with those digits.
fn full_year(short: u32) -> u32 {
    let this_year = civil_from_days(now().div_euclid(86_400)).0;
    let mut year = this_year - this_year % 100 + short as i64;
    if year > this_year + 50 {
        year -= 100;
    }
    year as u32
}

fn to_epoch(year: u32, month: u32, day: u32, seconds: i64) -> Option<i64> {
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(i64::from(year), month, day) * 86_400 + seconds)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Writes `seconds` as an IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
#[cfg(test)]
pub(crate) fn format(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let in_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = DAYS[(days + 3).rem_euclid(7) as usize];
    let month = MONTHS[month as usize - 1];
    format!(
        "{}{}, {day:02} {}{} {year:04} {:02}:{:02}:{:02} GMT",
        weekday[..1].to_ascii_uppercase(),
        &weekday[1..],
        month[..1].to_ascii_uppercase(),
        &month[1..],
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60
    )
}

/// The system's wall clock, in seconds since the epoch.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOV_6_1994: i64 = 784_111_777;

    #[test]
    fn the_three_formats_read_the_same_instant() {
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 GMT"), Some(NOV_6_1994));
        assert_eq!(parse("Sunday, 06-Nov-94 08:49:37 GMT"), Some(NOV_6_1994));
        assert_eq!(parse("Sun Nov  6 08:49:37 1994"), Some(NOV_6_1994));
        assert_eq!(parse(" Sun, 06 Nov 1994 08:49:37 GMT\t"), Some(NOV_6_1994));
    }

    #[test]
    fn names_are_compared_without_case() {
        assert_eq!(parse("SUN, 06 NOV 1994 08:49:37 gmt"), Some(NOV_6_1994));
    }

    #[test]
    fn far_dates_and_32_bit_edges_are_representable() {
        assert_eq!(parse("Tue, 19 Jan 2038 03:14:08 GMT"), Some(1 << 31));
        assert_eq!(parse("Sat, 20 Nov 2286 17:46:39 GMT"), Some(9_999_999_999));
        assert_eq!(parse("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse("Wed, 31 Dec 1969 23:59:59 GMT"), Some(-1));
    }

    #[test]
    fn what_is_not_an_http_date_is_refused() {
        for text in [
            "",
            "0",
            "-1",
            "Thu, 18 Aug 2050 02:01:18 UTC",
            "Thu, 18 Aug 2050 02:01:18 AEST",
            "Thu, 18 Aug 50 02:01:18 GMT",
            "Thu 18 Aug 2050 02:01:18 GMT",
            "Thu,  18 Aug 2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02:01:18 GMT x",
            "Thu, 31 Feb 2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 24:01:18 GMT",
            "Thu, 18 Aug 2050 2:01:18 GMT",
            "Xyz, 18 Aug 2050 02:01:18 GMT",
            "Thu, 18 Foo 2050 02:01:18 GMT",
            "Thursday, 18-Aug-2050 02:01:18 GMT",
            "Thu Aug 8 02:01:18 2050",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
        assert!(parse("Mon, 29 Feb 2044 00:00:00 GMT").is_some());
        assert_eq!(parse("Mon, 29 Feb 2100 00:00:00 GMT"), None);
        assert!(parse("Tue, 29 Feb 2000 00:00:00 GMT").is_some());
    }

    #[test]
    fn two_digit_years_stay_within_fifty_years_ahead() {
        let this_year = civil_from_days(now().div_euclid(86_400)).0 as u32;
        let ahead = (this_year + 10) % 100;
        assert_eq!(full_year(ahead), this_year + 10);
        let far = (this_year + 60) % 100;
        assert_eq!(full_year(far), this_year + 60 - 100);
    }

    #[test]
    fn formatting_round_trips() {
        assert_eq!(format(NOV_6_1994), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(format(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        for seconds in [0, 1 << 31, 9_999_999_999, 951_782_400, 1_790_000_000] {
            assert_eq!(parse(&format(seconds)), Some(seconds));
        }
    }
}
