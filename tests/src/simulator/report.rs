//! The report: what the provider saw, and what the fleet recorded.

use super::*;

/// The outcomes and the records, put together.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Deliveries made.
    pub deliveries: usize,
    /// Attempts made, retries included.
    pub attempts: usize,
    /// Deliveries answered 2xx at some attempt.
    pub acknowledged: usize,
    /// Deliveries recorded exactly once.
    pub recorded_once: usize,
    /// Deliveries acknowledged but never recorded: a loss.
    pub lost: Vec<Outcome>,
    /// Deliveries recorded more than once, with the count.
    pub duplicated: Vec<(Outcome, usize)>,
    /// Deliveries whose every attempt failed (the provider gave up), with whether the fleet
    /// recorded them anyway (an answer lost after the commit).
    pub exhausted: Vec<(Outcome, usize)>,
    /// The longest run of failed attempts in a row.
    pub longest_failure_run: usize,
}

impl Report {
    /// Matches `outcomes` against `recorded` (records per marker).
    #[must_use]
    pub fn new(
        outcomes: &[Outcome],
        recorded: &HashMap<String, usize>,
        longest_failure_run: usize,
    ) -> Self {
        let mut report = Self {
            deliveries: outcomes.len(),
            longest_failure_run,
            ..Self::default()
        };
        for outcome in outcomes {
            report.attempts += outcome.answers.len();
            let records = recorded.get(&outcome.planned.marker).copied().unwrap_or(0);
            if outcome.acknowledged() {
                report.acknowledged += 1;
            } else {
                report.exhausted.push((outcome.clone(), records));
            }
            match records {
                1 => report.recorded_once += 1,
                0 if outcome.acknowledged() => report.lost.push(outcome.clone()),
                0 => {}
                n => report.duplicated.push((outcome.clone(), n)),
            }
        }
        report
    }

    /// No delivery lost, none recorded twice.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty() && self.duplicated.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "deliveries {}, attempts {}, acknowledged {}, recorded once {}, lost {}, duplicated {}, \
             exhausted {}; longest run of failed attempts in a row {}",
            self.deliveries,
            self.attempts,
            self.acknowledged,
            self.recorded_once,
            self.lost.len(),
            self.duplicated.len(),
            self.exhausted.len(),
            self.longest_failure_run,
        )?;
        let lines = self
            .lost
            .iter()
            .map(|o| ("LOST".to_owned(), o, String::new()))
            .chain(
                self.duplicated
                    .iter()
                    .map(|(o, n)| (format!("DUPLICATED x{n}"), o, String::new())),
            )
            .chain(
                self.exhausted
                    .iter()
                    .map(|(o, n)| ("exhausted".to_owned(), o, format!(" (recorded {n})"))),
            );
        for (what, outcome, recorded) in lines {
            let p = &outcome.planned;
            let answers: Vec<String> = outcome.answers.iter().map(ToString::to_string).collect();
            writeln!(
                f,
                "  {what} {:?} {} {}{recorded}: {}",
                p.provider,
                p.tenant,
                p.marker,
                answers.join(" ")
            )?;
        }
        Ok(())
    }
}

/// The longest run of failed attempts in a row that one provider's webhook saw (among
/// `attempts`, in the order their answers came) that holds an attempt sent from `from` to
/// `until`: what its circuit breaker counts (Contentstack disables a webhook after 10).
#[must_use]
pub fn longest_failure_run(
    attempts: &[Attempt],
    contentstack: bool,
    from: std::time::Instant,
    until: std::time::Instant,
) -> usize {
    let (mut current, mut touches, mut longest) = (0, false, 0);
    for attempt in attempts.iter().filter(|a| a.contentstack == contentstack) {
        if attempt.acknowledged {
            (current, touches) = (0, false);
        } else {
            current += 1;
            touches |= attempt.sent >= from && attempt.sent <= until;
            if touches {
                longest = longest.max(current);
            }
        }
    }
    longest
}

/// The `percentile` (0 to 100) of how long the acknowledged `attempts` sent from `from` to
/// `until` waited for their answer; `None` when there are none.
#[must_use]
pub fn latency_percentile(
    attempts: &[Attempt],
    from: std::time::Instant,
    until: std::time::Instant,
    percentile: f64,
) -> Option<Duration> {
    let mut took: Vec<Duration> = attempts
        .iter()
        .filter(|a| a.acknowledged && a.sent >= from && a.sent <= until)
        .map(|a| a.took)
        .collect();
    if took.is_empty() {
        return None;
    }
    took.sort_unstable();
    let rank = ((percentile / 100.0) * (took.len() - 1) as f64).round() as usize;
    Some(took[rank.min(took.len() - 1)])
}
