//! The load: what is planned, and a run from plan to report.

use super::*;

/// What to send: how many deliveries, over how long, to which stacks and spaces.
#[derive(Debug, Clone)]
pub struct Load {
    /// Deliveries in all.
    pub deliveries: usize,
    /// The first attempts are spread evenly over this long.
    pub window: Duration,
    /// The stacks (Contentstack deliveries); the app is installed on each first.
    pub stacks: Vec<String>,
    /// The spaces (Contentful deliveries); none: Contentstack only.
    pub spaces: Vec<String>,
    /// Tells this run's markers from another's.
    pub run: String,
}

impl Load {
    /// The deliveries, in a fixed mix: of every ten, four Contentstack RSA, three Contentstack
    /// HMAC and three Contentful (Contentstack only when there are no spaces); Contentstack
    /// deliveries alternate between re-signed retries (mode A) and resent bytes (mode B);
    /// stacks and spaces in turn.
    #[must_use]
    pub fn plan(&self) -> Vec<Planned> {
        (0..self.deliveries)
            .map(|n| {
                let provider = match (n % 10, self.spaces.is_empty()) {
                    (0..=3, _) | (7..=9, true) => Provider::ContentstackRsa,
                    (4..=6, _) => Provider::ContentstackHmac,
                    _ => Provider::Contentful,
                };
                let tenant = if provider.is_contentstack() {
                    self.stacks[n % self.stacks.len()].clone()
                } else {
                    self.spaces[n % self.spaces.len()].clone()
                };
                Planned {
                    provider,
                    tenant,
                    marker: format!("{}-{n}", self.run),
                    resend: if n % 2 == 0 {
                        Resend::ReSign
                    } else {
                        Resend::SameBytes
                    },
                }
            })
            .collect()
    }

    /// The stacks and spaces to read back.
    #[must_use]
    pub fn tenants(&self) -> Vec<(Provider, String)> {
        self.stacks
            .iter()
            .map(|s| (Provider::ContentstackRsa, s.clone()))
            .chain(
                self.spaces
                    .iter()
                    .map(|s| (Provider::Contentful, s.clone())),
            )
            .collect()
    }
}

/// Installs the app on every stack of `load`, makes its deliveries (each through its retries)
/// and returns their outcomes once the last one is settled.
///
/// # Errors
/// When an installation is not acknowledged: nothing else can be recorded then.
///
/// # Panics
/// When a delivery's task panics.
pub async fn run(
    simulator: &std::sync::Arc<Simulator>,
    load: &Load,
) -> Result<Vec<Outcome>, String> {
    for stack in &load.stacks {
        let installed = simulator.install(stack).await;
        if !installed.acknowledged() {
            return Err(format!(
                "the installation on {stack} was not acknowledged: {:?}",
                installed.answers
            ));
        }
    }
    let planned = load.plan();
    let gap = load.window.div_f64(planned.len().max(1) as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(planned.len());
    for (n, delivery) in planned.into_iter().enumerate() {
        tokio::time::sleep_until(start + gap * u32::try_from(n).unwrap_or(u32::MAX)).await;
        let simulator = std::sync::Arc::clone(simulator);
        tasks.push(tokio::spawn(
            async move { simulator.deliver(delivery).await },
        ));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.expect("a delivery task"));
    }
    Ok(outcomes)
}
