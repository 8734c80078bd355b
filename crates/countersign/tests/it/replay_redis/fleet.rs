//! The fleet under kills

use super::*;

/// The fleet under kills, for the figures of a longer run (`scripts/fleet`): deliveries sent as
/// Contentstack would (re-signed each attempt, retried on its schedule, scaled in time, each
/// attempt to the next node in turn) to two nodes, while one node after the other is killed
/// with SIGKILL and started again.
///
/// `FLEET_DELIVERIES` (default 40), `FLEET_SCALE` (the schedule's time scale, default 0.1),
/// `FLEET_KILL_EVERY_MS` (default 1500).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a longer fault run: scripts/fleet"]
async fn fleet_under_kills() {
    let setting =
        |name: &str, default: f64| std::env::var(name).map_or(default, |v| v.parse().unwrap());
    let deliveries = setting("FLEET_DELIVERIES", 40.0) as usize;
    let scale = setting("FLEET_SCALE", 0.1);
    let kill_every = Duration::from_millis(setting("FLEET_KILL_EVERY_MS", 1500.0) as u64);
    // The lease stays below the first (scaled) retry interval.
    let lease = ((5_000.0 * scale) * 0.6) as u64;
    let env = vec![("LEASE_MS".to_owned(), lease.to_string())];
    let redis = RedisServer::start().await;
    let records = records_file("fleet");
    let mut first = Vec::new();
    for _ in 0..2 {
        first.push(Node::start(&redis.url(), &records, None, &env).await);
    }
    let urls: Vec<String> = first.iter().map(|node| node.url.clone()).collect();
    let nodes = Arc::new(tokio::sync::Mutex::new(first));

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = tokio::spawn({
        let (nodes, stop, records, url) =
            (nodes.clone(), stop.clone(), records.clone(), redis.url());
        async move {
            let mut kills = 0usize;
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(kill_every).await;
                let mut nodes = nodes.lock().await;
                let node = &mut nodes[kills % 2];
                node.kill();
                kills += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                *node = Node::start(&url, &records, Some(node.port), &env).await;
            }
            kills
        }
    });

    let keys = countersign::contentstack::KeySet::parse(PUBLIC_A).unwrap();
    let retries = countersign::contentstack::RETRY_SCHEDULE.map(|d| d.as_secs());
    let schedule = [0, retries[0], retries[1], retries[2], retries[3]];
    let mut tasks = Vec::new();
    for n in 0..deliveries {
        let (urls, keys) = (urls.clone(), keys.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(n as u64 * 40)).await;
            let data = format!(r#"{{"n":{n},"delay_ms":{}}}"#, 50 + (n * 37) % 250);
            let body = webhook_body(Duration::ZERO, &data);
            let mut headers = http::HeaderMap::new();
            headers.insert(
                "x-contentstack-request-signature",
                rsa_signature(PRIVATE_A, &body).parse().unwrap(),
            );
            let id = WebhookVerifier::new()
                .diagnose()
                .verify_with_keys(
                    &headers,
                    body.as_bytes(),
                    Some(&keys),
                    std::time::SystemTime::now(),
                )
                .unwrap()
                .delivery_id();
            let mut answers = Vec::new();
            for (turn, pause) in schedule.iter().enumerate() {
                tokio::time::sleep(Duration::from_secs_f64(*pause as f64 * scale)).await;
                let answer = attempt(&urls[(n + turn) % urls.len()], &body).await;
                answers.push(answer);
                if answer.is_some_and(|status| (200..300).contains(&status)) {
                    return (id, answers, true);
                }
            }
            (id, answers, false)
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    stop.store(true, Ordering::SeqCst);
    let kills = killer.await.unwrap();

    // Each line is `start|done <delivery id> <pid>`, in the order the nodes wrote them.
    let lines: Vec<Vec<String>> = std::fs::read_to_string(&records)
        .unwrap_or_default()
        .lines()
        .map(|line| line.split(' ').map(str::to_owned).collect())
        .collect();
    let done_at = |id: &str| -> Vec<usize> {
        (0..lines.len())
            .filter(|&i| lines[i][0] == "done" && lines[i][1] == id)
            .collect()
    };
    // A handler that ran to completion again is explained only by its first node dying between
    // the handler's commit and the "done" mark: that node wrote nothing after it.
    let killed_after_commit =
        |at: usize| lines[at + 1..].iter().all(|line| line[2] != lines[at][2]);
    let attempts: usize = outcomes.iter().map(|(_, answers, _)| answers.len()).sum();
    let (mut once, mut rerun, mut unexplained, mut lost, mut exhausted) = (0, 0, 0, 0, Vec::new());
    for (id, answers, acknowledged) in &outcomes {
        let done = done_at(id);
        match (done.len(), acknowledged) {
            (1, _) => once += 1,
            (0, true) => lost += 1,
            (0, false) => exhausted.push(answers),
            _ if done[..done.len() - 1]
                .iter()
                .all(|&at| killed_after_commit(at)) =>
            {
                rerun += 1
            }
            _ => unexplained += 1,
        }
    }
    println!(
        "fleet: {deliveries} deliveries, {attempts} attempts, {kills} SIGKILLs; {} recorded once by \
         delivery id, {once} handled once, {rerun} handled again after a kill between the handler's \
         commit and the done mark, {unexplained} handled twice otherwise, {lost} lost, {} exhausted",
        once + rerun,
        exhausted.len()
    );
    for answers in &exhausted {
        println!("  exhausted, answers: {answers:?}");
    }
    assert_eq!((lost, unexplained), (0, 0));
}
