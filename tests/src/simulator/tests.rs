//! The simulator's own rules: the schedule, the mix, the report.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use super::*;

fn outcome(marker: &str, answers: &[Answer]) -> Outcome {
    Outcome {
        planned: Planned {
            provider: Provider::ContentstackRsa,
            tenant: "blt1".into(),
            marker: marker.into(),
            resend: Resend::ReSign,
        },
        answers: answers.to_vec(),
    }
}

#[test]
fn the_schedule_is_contentstacks_scaled_with_a_floor_on_the_timeout() {
    let real = Schedule::contentstack(1.0, Duration::from_secs(2));
    assert_eq!(real.retries, [5, 25, 125, 625].map(Duration::from_secs));
    assert_eq!(real.timeout, Duration::from_secs(30));
    assert_eq!(real.span(), Duration::from_secs(780));
    let fast = Schedule::contentstack(0.01, Duration::from_secs(2));
    assert_eq!(fast.retries[0], Duration::from_millis(50));
    assert_eq!(fast.timeout, Duration::from_secs(2));
}

#[test]
fn the_plan_mixes_providers_and_modes_over_every_tenant() {
    let load = Load {
        deliveries: 100,
        window: Duration::ZERO,
        stacks: vec!["s0".into(), "s1".into()],
        spaces: vec!["p0".into()],
        run: "r".into(),
    };
    let plan = load.plan();
    let count = |p: Provider| plan.iter().filter(|d| d.provider == p).count();
    assert_eq!(count(Provider::ContentstackRsa), 40);
    assert_eq!(count(Provider::ContentstackHmac), 30);
    assert_eq!(count(Provider::Contentful), 30);
    assert!(plan.iter().any(|d| d.resend == Resend::SameBytes));
    assert!(plan.iter().any(|d| d.tenant == "s1"));
    let markers: std::collections::HashSet<_> = plan.iter().map(|d| &d.marker).collect();
    assert_eq!(markers.len(), 100, "every marker unique");
    let stacks_only = Load {
        spaces: Vec::new(),
        ..load
    };
    assert!(
        stacks_only
            .plan()
            .iter()
            .all(|d| d.provider.is_contentstack())
    );
}

#[test]
fn the_report_tells_lost_duplicated_and_exhausted_apart() {
    let outcomes = [
        outcome("once", &[Answer::Status(200)]),
        outcome(
            "retried",
            &[Answer::Refused, Answer::Lost, Answer::Status(200)],
        ),
        outcome("lost", &[Answer::Status(200)]),
        outcome("twice", &[Answer::Timeout, Answer::Status(200)]),
        outcome("given-up", &[Answer::Status(503); 5]),
        outcome("given-up-but-recorded", &[Answer::Timeout; 5]),
    ];
    let recorded: HashMap<String, usize> = [
        ("once", 1),
        ("retried", 1),
        ("twice", 2),
        ("given-up-but-recorded", 1),
    ]
    .into_iter()
    .map(|(m, n)| (m.to_owned(), n))
    .collect();
    let report = Report::new(&outcomes, &recorded, 7);
    assert_eq!(report.deliveries, 6);
    assert_eq!(report.attempts, 1 + 3 + 1 + 2 + 5 + 5);
    assert_eq!(report.acknowledged, 4);
    assert_eq!(report.recorded_once, 3);
    assert_eq!(report.lost.len(), 1);
    assert_eq!(report.lost[0].planned.marker, "lost");
    assert_eq!(report.duplicated.len(), 1);
    assert_eq!(report.duplicated[0].1, 2);
    assert_eq!(report.exhausted.len(), 2);
    assert!(!report.is_clean());
    let text = report.to_string();
    assert!(text.contains("lost 1, duplicated 1, exhausted 2"), "{text}");
    assert!(
        text.contains("exhausted ContentstackRsa blt1 given-up (recorded 0): 503 503 503 503 503"),
        "{text}"
    );
    assert_eq!(Answer::Lost.to_string(), "2xx-lost");
    assert!(!Answer::Lost.acknowledged(), "a lost 2xx is retried");
}
