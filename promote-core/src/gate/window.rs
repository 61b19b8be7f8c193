//! Deploy windows and freezes: promotions only on allowed weekdays and hours, in a named time zone, and
//! never during a freeze.
//!
//! ```yaml
//! gates:
//!   - kind: window
//!     name: office-hours              # default: window
//!     timezone: Europe/Berlin         # an IANA name
//!     days: [mon-thu, fri]            # default: every day
//!     hours: ["09:00-12:00", "13:00-17:00"]   # default: all day; "24:00" ends at midnight
//!     freezes:
//!       - { from: "2026-12-19", until: "2027-01-04", reason: year-end }
//!       - { from: "2026-06-01T18:00:00Z", until: "2026-06-02T06:00:00Z" }
//! ```
//!
//! Outside the window the gate is [`Verdict::Pending`], with the next opening in the reason and in the
//! evidence (`next_opening`, in the window's zone). Hours are wall-clock times in the zone, so across a
//! daylight-saving change the window follows the clock: a window whose hours fall in the hour skipped in
//! spring is shorter that day (or absent), and one in the hour repeated in autumn is open both times.
//! A freeze's `from` and `until` are RFC 3339 instants, or local dates and times in the window's zone
//! (`2026-12-19`, `2026-12-19 18:00`); a freeze covers `from` up to, not including, `until`.

use async_trait::async_trait;
use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Timelike, Utc,
    Weekday,
};
use chrono_tz::Tz;

use super::{ApprovalPolicy, Gate, GateCapabilities, GateContext, GateReport};
use crate::error::{Error, Result};
use crate::ledger::Verdict;

const SECONDS_PER_DAY: u32 = 86_400;

/// How far ahead (in days after the last freeze) the gate looks for the next opening.
const LOOKAHEAD_DAYS: u64 = 400;

/// A period during which nothing is promoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freeze {
    /// The first instant of the freeze.
    pub from: DateTime<Utc>,
    /// The first instant after it.
    pub until: DateTime<Utc>,
    /// Why (shown in the reason).
    pub reason: Option<String>,
}

impl Freeze {
    /// A freeze from `from` up to (not including) `until`, which must be later.
    pub fn new(from: DateTime<Utc>, until: DateTime<Utc>, reason: Option<String>) -> Result<Self> {
        if until <= from {
            return Err(Error::invalid("freeze", format!("{from} .. {until}"), "`until` must be after `from`"));
        }
        Ok(Freeze { from, until, reason })
    }

    /// Parses a freeze's ends: RFC 3339 instants, or local dates (`2026-12-19`) or local times
    /// (`2026-12-19 18:00`, `2026-12-19T18:00:00`) in `zone`.
    pub fn parse(zone: Tz, from: &str, until: &str, reason: Option<&str>) -> Result<Self> {
        Freeze::new(parse_instant(zone, from)?, parse_instant(zone, until)?, reason.map(str::to_owned))
    }

    fn covers(&self, at: DateTime<Utc>) -> bool {
        self.from <= at && at < self.until
    }
}

fn parse_instant(zone: Tz, text: &str) -> Result<DateTime<Utc>> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(instant.with_timezone(&Utc));
    }
    let local = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .or_else(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().map(|date| date.and_time(NaiveTime::MIN)))
        .ok_or_else(|| {
            Error::invalid(
                "time",
                text,
                "expected an RFC 3339 instant (2026-12-19T18:00:00Z), a local time (2026-12-19 18:00) \
                 or a local date (2026-12-19)",
            )
        })?;
    Ok(earliest_at_or_after(zone, local))
}

/// The first instant at which the wall clock in `zone` reads `local` or later (the earlier one of a
/// repeated time; the end of the gap for a skipped one).
fn earliest_at_or_after(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at.with_timezone(&Utc),
        LocalResult::None => {
            let as_utc = local.and_utc();
            let offset =
                |at: DateTime<Utc>| i64::from(zone.offset_from_utc_datetime(&at.naive_utc()).fix().local_minus_utc());
            let before = offset(as_utc - chrono::Duration::days(1));
            let after = offset(as_utc + chrono::Duration::days(1));
            let low = as_utc - chrono::Duration::seconds(before.max(after));
            let high = as_utc - chrono::Duration::seconds(before.min(after));
            first_where(low, high, |at| at.with_timezone(&zone).naive_local() >= local)
        }
    }
}

/// The first instant in `[low, high]` (to the second) where `holds` becomes true, for a predicate that
/// is false before some instant and true from it on; `high` if it never turns.
fn first_where(low: DateTime<Utc>, high: DateTime<Utc>, holds: impl Fn(DateTime<Utc>) -> bool) -> DateTime<Utc> {
    let at = |second: i64| DateTime::from_timestamp(second, 0).unwrap_or(high);
    let (mut low, mut high) = (low.timestamp(), high.timestamp());
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if holds(at(middle)) {
            high = middle;
        } else {
            low = middle;
        }
    }
    if holds(at(low)) { at(low) } else { at(high) }
}

/// A gate open on some weekdays and hours in a time zone, and closed during freezes.
///
/// # Examples
/// ```
/// use promote_core::gate::WindowGate;
/// let gate = WindowGate::new("office-hours", "Europe/Berlin")?
///     .days(&["mon-fri"])?
///     .hours("09:00-17:00")?;
/// let friday_evening = "2026-03-27T17:30:00+01:00".parse().unwrap();
/// assert!(!gate.is_open(friday_evening));
/// let monday_morning: chrono::DateTime<chrono::Utc> = "2026-03-30T09:00:00+02:00".parse().unwrap();
/// assert_eq!(gate.next_opening(friday_evening), Some(monday_morning));
/// # Ok::<(), promote_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct WindowGate {
    name: String,
    zone: Tz,
    /// Indexed by days from Monday.
    days: [bool; 7],
    /// `[start, end)` in seconds after local midnight; empty means all day.
    hours: Vec<(u32, u32)>,
    freezes: Vec<Freeze>,
}

impl WindowGate {
    /// A gate called `name`, open every day, all day, in the IANA zone `timezone` (`Europe/Berlin`).
    pub fn new(name: impl Into<String>, timezone: &str) -> Result<Self> {
        let zone: Tz = timezone.parse().map_err(|_| {
            Error::invalid("time zone", timezone, "not an IANA time zone name like Europe/Berlin or UTC")
        })?;
        Ok(WindowGate { name: name.into(), zone, days: [true; 7], hours: Vec::new(), freezes: Vec::new() })
    }

    /// Allows only these weekdays: `mon`, `tuesday`, or ranges such as `mon-fri` (`fri-mon` wraps).
    pub fn days<S: AsRef<str>>(mut self, days: &[S]) -> Result<Self> {
        let mut allowed = [false; 7];
        for entry in days {
            let entry = entry.as_ref().trim();
            let (first, last) = entry.split_once('-').unwrap_or((entry, entry));
            let weekday = |text: &str| {
                text.trim()
                    .parse::<Weekday>()
                    .map_err(|_| Error::invalid("weekday", entry, "expected mon, tue, … sun, or a range like mon-fri"))
            };
            let (mut day, last) = (weekday(first)?, weekday(last)?);
            loop {
                allowed[day.num_days_from_monday() as usize] = true;
                if day == last {
                    break;
                }
                day = day.succ();
            }
        }
        if !allowed.contains(&true) {
            return Err(Error::invalid("weekdays", "[]", "name at least one day"));
        }
        self.days = allowed;
        Ok(self)
    }

    /// Adds an allowed range of hours, `09:00-17:00` (end excluded; `24:00` is midnight at the end of the
    /// day). Without any, the window is open all day.
    pub fn hours(mut self, range: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::invalid("hours", range, reason);
        let (start, end) = range.split_once('-').ok_or_else(|| invalid("expected a range like 09:00-17:00"))?;
        let seconds = |text: &str| -> Result<u32> {
            let text = text.trim();
            if text == "24:00" || text == "24:00:00" {
                return Ok(SECONDS_PER_DAY);
            }
            NaiveTime::parse_from_str(text, "%H:%M:%S")
                .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M"))
                .map(|time| time.num_seconds_from_midnight())
                .map_err(|_| invalid("expected times like 09:00 or 17:30"))
        };
        let (start, end) = (seconds(start)?, seconds(end)?);
        if end <= start {
            return Err(invalid("the end must be after the start (for a window across midnight, allow two ranges)"));
        }
        self.hours.push((start, end));
        Ok(self)
    }

    /// Adds a freeze.
    pub fn freeze(mut self, freeze: Freeze) -> Self {
        self.freezes.push(freeze);
        self
    }

    /// The window's time zone.
    pub fn timezone(&self) -> Tz {
        self.zone
    }

    /// The freeze in force at `at`, if any.
    pub fn frozen_at(&self, at: DateTime<Utc>) -> Option<&Freeze> {
        self.freezes.iter().find(|freeze| freeze.covers(at))
    }

    fn in_hours(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.zone);
        let second = local.num_seconds_from_midnight();
        self.days[local.weekday().num_days_from_monday() as usize]
            && (self.hours.is_empty() || self.hours.iter().any(|&(start, end)| start <= second && second < end))
    }

    /// Whether promotions are allowed at `at`.
    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        self.in_hours(at) && self.frozen_at(at).is_none()
    }

    /// The first instant at or after `from` when the window is open, or `None` if it does not open within
    /// 400 days after `from` and the last freeze.
    pub fn next_opening(&self, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.is_open(from) {
            return Some(from);
        }
        // The window can only open where the wall clock reaches the start of a range, where the clock
        // jumps (daylight saving), or where a freeze ends: try those instants in order.
        let mut best =
            self.freezes.iter().map(|freeze| freeze.until).filter(|&until| until >= from && self.is_open(until)).min();
        let last = self.freezes.iter().map(|freeze| freeze.until).chain([from]).max().unwrap_or(from);
        let first_day = from.with_timezone(&self.zone).date_naive() - Days::new(1);
        let last_day = last.with_timezone(&self.zone).date_naive() + Days::new(LOOKAHEAD_DAYS);
        let starts: Vec<u32> =
            if self.hours.is_empty() { vec![0] } else { self.hours.iter().map(|&(start, _)| start).collect() };
        let mut day = first_day;
        while day <= last_day {
            if let Some(found) = best
                && day > found.with_timezone(&self.zone).date_naive() + Days::new(1)
            {
                break;
            }
            let mut candidates = Vec::new();
            for &start in &starts {
                candidates.extend(self.local_instants(day, start));
            }
            candidates.extend(self.transition_on(day));
            for candidate in candidates {
                if candidate >= from && best.is_none_or(|found| candidate < found) && self.is_open(candidate) {
                    best = Some(candidate);
                }
            }
            day = day + Days::new(1);
        }
        best
    }

    /// Every instant at which the wall clock reads `second` on `day` (none in a skipped hour, two in a
    /// repeated one).
    fn local_instants(&self, day: NaiveDate, second: u32) -> Vec<DateTime<Utc>> {
        let local = day.and_time(NaiveTime::MIN) + chrono::Duration::seconds(i64::from(second));
        match self.zone.from_local_datetime(&local) {
            LocalResult::Single(at) => vec![at.with_timezone(&Utc)],
            LocalResult::Ambiguous(first, second) => {
                vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
            }
            LocalResult::None => Vec::new(),
        }
    }

    /// The instant the zone's offset changes on `day`, if it does.
    fn transition_on(&self, day: NaiveDate) -> Option<DateTime<Utc>> {
        let start = earliest_at_or_after(self.zone, day.and_time(NaiveTime::MIN));
        let end = earliest_at_or_after(self.zone, (day + Days::new(1)).and_time(NaiveTime::MIN));
        let offset = |at: DateTime<Utc>| self.zone.offset_from_utc_datetime(&at.naive_utc()).fix().local_minus_utc();
        let (before, after) = (offset(start), offset(end));
        (before != after).then(|| first_where(start, end, |at| offset(at) == after))
    }

    fn describe(&self) -> String {
        const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let days: Vec<&str> =
            NAMES.iter().zip(self.days).filter_map(|(name, allowed)| allowed.then_some(*name)).collect();
        let days = if days.len() == 7 { "every day".to_owned() } else { days.join(", ") };
        let hours = if self.hours.is_empty() {
            "all day".to_owned()
        } else {
            let clock = |second: u32| format!("{:02}:{:02}", second / 3600, second % 3600 / 60);
            self.hours
                .iter()
                .map(|&(start, end)| format!("{}-{}", clock(start), clock(end)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!("{days} {hours} {}", self.zone.name())
    }
}

#[async_trait]
impl Gate for WindowGate {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &str {
        "window"
    }

    fn capabilities(&self) -> GateCapabilities {
        GateCapabilities::pure()
    }

    fn approval_policy(&self) -> Option<&ApprovalPolicy> {
        None
    }

    async fn evaluate(&self, context: &GateContext<'_>) -> Result<GateReport> {
        let now = context.now;
        let local = |at: DateTime<Utc>| at.with_timezone(&self.zone).to_rfc3339();
        let report = GateReport::new(Verdict::Pass).with("window", self.describe()).with("local_time", local(now));
        if self.is_open(now) {
            return Ok(report);
        }
        let next = self.next_opening(now);
        let why = match self.frozen_at(now) {
            Some(freeze) => format!(
                "frozen until {}{}",
                local(freeze.until),
                freeze.reason.as_deref().map(|reason| format!(" ({reason})")).unwrap_or_default()
            ),
            None => format!("outside the deploy window ({})", self.describe()),
        };
        let reason = match next {
            Some(next) => format!("{why}; next opening {}", local(next)),
            None => format!("{why}; no opening in the next {LOOKAHEAD_DAYS} days"),
        };
        let mut report = report.with("next_opening", next.map(local));
        if let Some(freeze) = self.frozen_at(now) {
            report = report.with("frozen_until", local(freeze.until));
        }
        report.verdict = Verdict::Pending(reason);
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration as Span;
    use proptest::prelude::*;

    use super::*;
    use crate::testing::scene::{Scene, at};

    fn office() -> WindowGate {
        WindowGate::new("office", "Europe/Berlin").unwrap().days(&["mon-fri"]).unwrap().hours("09:00-17:00").unwrap()
    }

    #[tokio::test]
    async fn inside_passes_outside_is_pending_with_the_next_opening() {
        let mut scene = Scene::new();
        let build = scene.register("1.0.0", &[]);
        let gate = office();
        // Wednesday 10:00 in Berlin (CET, +01:00).
        let report = scene.evaluate(&gate, &build, "prd", &[], at("2026-03-04T09:00:00Z")).await;
        assert_eq!(report.verdict, Verdict::Pass);
        // Friday 17:00 sharp is closed (the end is excluded); it opens on Monday at 09:00 local time.
        let report = scene.evaluate(&gate, &build, "prd", &[], at("2026-03-06T16:00:00Z")).await;
        let Verdict::Pending(reason) = &report.verdict else { panic!("{report:?}") };
        assert!(
            reason.contains("outside the deploy window (mon, tue, wed, thu, fri 09:00-17:00 Europe/Berlin)"),
            "{reason}"
        );
        assert!(reason.contains("next opening 2026-03-09T09:00:00+01:00"), "{reason}");
        assert_eq!(report.evidence["next_opening"], "2026-03-09T09:00:00+01:00");
    }

    #[tokio::test]
    async fn a_freeze_is_pending_until_it_ends() {
        let mut scene = Scene::new();
        let build = scene.register("1.0.0", &[]);
        let zone = office().timezone();
        let gate = office().freeze(Freeze::parse(zone, "2026-12-19", "2027-01-04 12:00", Some("year-end")).unwrap());
        let report = scene.evaluate(&gate, &build, "prd", &[], at("2026-12-22T10:00:00Z")).await;
        let Verdict::Pending(reason) = &report.verdict else { panic!("{report:?}") };
        assert!(reason.contains("frozen until 2027-01-04T12:00:00+01:00 (year-end)"), "{reason}");
        assert!(reason.contains("next opening 2027-01-04T12:00:00+01:00"), "{reason}");
        assert_eq!(report.evidence["frozen_until"], "2027-01-04T12:00:00+01:00");
        let report = scene.evaluate(&gate, &build, "prd", &[], at("2027-01-04T11:00:00Z")).await;
        assert_eq!(report.verdict, Verdict::Pass);
    }

    #[test]
    fn spring_forward_skips_the_missing_hour() {
        // Berlin, Sunday 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00 UTC.
        let inside_gap =
            WindowGate::new("w", "Europe/Berlin").unwrap().days(&["sun"]).unwrap().hours("02:00-03:00").unwrap();
        assert!(!inside_gap.is_open(at("2026-03-29T00:59:59Z")));
        assert!(!inside_gap.is_open(at("2026-03-29T01:00:00Z")));
        // That day has no 02:xx, so the next opening is a week later.
        assert_eq!(inside_gap.next_opening(at("2026-03-28T12:00:00Z")), Some(at("2026-04-05T00:00:00Z")));
        // A window that starts in the gap opens when the clock jumps into it.
        let across_gap = WindowGate::new("w", "Europe/Berlin").unwrap().hours("02:30-04:00").unwrap();
        assert_eq!(across_gap.next_opening(at("2026-03-28T23:00:00Z")), Some(at("2026-03-29T01:00:00Z")));
        assert!(!across_gap.is_open(at("2026-03-29T00:59:59Z")));
        assert!(across_gap.is_open(at("2026-03-29T01:00:00Z")));
        // Three hours of wall clock, two of real time.
        let morning = WindowGate::new("w", "Europe/Berlin").unwrap().hours("01:00-04:00").unwrap();
        assert!(morning.is_open(at("2026-03-29T00:00:00Z")));
        assert!(!morning.is_open(at("2026-03-29T02:00:00Z")));
    }

    #[test]
    fn fall_back_repeats_the_hour_and_the_window_with_it() {
        // Berlin, Sunday 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00 UTC; 02:xx happens twice.
        let gate = WindowGate::new("w", "Europe/Berlin").unwrap().hours("02:00-02:30").unwrap();
        assert_eq!(gate.next_opening(at("2026-10-24T22:00:00Z")), Some(at("2026-10-25T00:00:00Z")));
        assert!(gate.is_open(at("2026-10-25T00:29:59Z")));
        assert!(!gate.is_open(at("2026-10-25T00:30:00Z")));
        assert_eq!(gate.next_opening(at("2026-10-25T00:30:00Z")), Some(at("2026-10-25T01:00:00Z")));
        assert!(!gate.is_open(at("2026-10-25T01:30:00Z")));
        // A window ending inside the repeated hour opens again when the clock goes back.
        let ends_inside = WindowGate::new("w", "Europe/Berlin").unwrap().hours("01:00-02:30").unwrap();
        assert!(!ends_inside.is_open(at("2026-10-25T00:45:00Z")));
        assert_eq!(ends_inside.next_opening(at("2026-10-25T00:45:00Z")), Some(at("2026-10-25T01:00:00Z")));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(WindowGate::new("w", "Mars/Olympus").is_err());
        let gate = WindowGate::new("w", "UTC").unwrap();
        assert!(gate.clone().days(&["funday"]).is_err());
        assert!(gate.clone().days::<&str>(&[]).is_err());
        assert!(gate.clone().hours("17:00-09:00").is_err());
        assert!(gate.clone().hours("9am-5pm").is_err());
        assert!(gate.clone().hours("09:00").is_err());
        assert!(Freeze::parse(gate.timezone(), "2026-12-19", "2026-12-01", None).is_err());
        assert!(Freeze::parse(gate.timezone(), "soon", "2026-12-01", None).is_err());
        let weekend = gate.days(&["fri-mon"]).unwrap();
        assert_eq!(weekend.days, [true, false, false, false, true, true, true]);
    }

    fn zones() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("Europe/Berlin"),
            Just("America/New_York"),
            Just("Australia/Lord_Howe"),
            Just("Asia/Kolkata"),
            Just("UTC"),
        ]
    }

    /// Instants near the 2026 daylight-saving changes of the zones above, and anywhere in the year.
    fn instants() -> impl Strategy<Value = DateTime<Utc>> {
        let near = prop_oneof![
            Just(at("2026-03-29T01:00:00Z")),
            Just(at("2026-10-25T01:00:00Z")),
            Just(at("2026-03-08T07:00:00Z")),
            Just(at("2026-11-01T06:00:00Z")),
            Just(at("2026-04-04T15:00:00Z")),
            Just(at("2026-10-03T15:30:00Z")),
        ];
        prop_oneof![
            (near, -3 * 86_400i64..3 * 86_400).prop_map(|(t, s)| t + Span::seconds(s)),
            (0i64..365 * 86_400).prop_map(|s| at("2026-01-01T00:00:00Z") + Span::seconds(s)),
        ]
    }

    fn windows() -> impl Strategy<Value = WindowGate> {
        let range = (0u32..96, 1u32..24).prop_map(|(start, length)| {
            let start = start * 900;
            (start, (start + length * 900).min(SECONDS_PER_DAY))
        });
        (zones(), proptest::collection::vec(any::<bool>(), 7), proptest::collection::vec(range, 0..3))
            .prop_filter("at least one day", |(_, days, _)| days.contains(&true))
            .prop_map(|(zone, days, hours)| {
                let mut gate = WindowGate::new("w", zone).unwrap();
                gate.days.copy_from_slice(&days);
                gate.hours = hours;
                gate
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// The next opening is open, and no minute between now and it is.
        #[test]
        fn the_next_opening_is_the_first_open_instant(gate in windows(), now in instants(), freeze in proptest::option::of((0i64..3 * 86_400, 1i64..2 * 86_400))) {
            let gate = match freeze {
                Some((offset, length)) => {
                    let from = now + Span::seconds(offset);
                    gate.freeze(Freeze::new(from, from + Span::seconds(length), None).unwrap())
                }
                None => gate,
            };
            let next = gate.next_opening(now).expect("a window with a day and an hour opens within a week");
            prop_assert!(next >= now);
            prop_assert!(gate.is_open(next), "not open at {next}");
            // A week, plus a freeze that may hide one week's only opening.
            prop_assert!(next - now <= Span::days(16));
            let mut probe = now;
            while probe < next {
                prop_assert!(!gate.is_open(probe), "open at {probe}, before the next opening {next}");
                probe += Span::minutes(1);
            }
            // An open instant is its own next opening.
            prop_assert_eq!(gate.next_opening(next), Some(next));
        }

        /// Just before a range starts the window is shut and opens at the start; at the end it is shut.
        #[test]
        fn range_edges_are_exact(start in 0u32..(23 * 4), length in 1u32..4, day in 0u64..365, zone in zones()) {
            let (start, end) = (start * 900, start * 900 + length * 900);
            let mut gate = WindowGate::new("w", zone).unwrap();
            gate.hours = vec![(start, end)];
            let date = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + Days::new(day);
            let opening = gate.local_instants(date, start);
            for opening in opening {
                prop_assert!(gate.is_open(opening));
                prop_assert_eq!(gate.next_opening(opening - Span::seconds(1)).map(|n| n <= opening), Some(true));
            }
            for closing in gate.local_instants(date, end) {
                prop_assert!(!gate.is_open(closing) || end == SECONDS_PER_DAY);
            }
        }
    }
}
