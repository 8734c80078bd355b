//! In a browser

use super::*;

#[tokio::test]
async fn in_headless_chromium_a_framed_ui_location_calls_the_api_with_its_session() {
    let dir = temp_dir("browser");
    let (app, key) = installed_with_one_event(&dir).await;
    // The UI on origin http://localhost:<port>, the host page on http://127.0.0.1:<other port>.
    let ui = format!(
        "{}/ui/sidebar?app-token={}",
        app.base.replace("127.0.0.1", "localhost"),
        app_token(&key, "bltA")
    );
    let host_page = format!(
        r#"<!doctype html><title>host</title><iframe src="{ui}" width="800" height="600"></iframe>"#
    );
    let host = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { axum::response::Html(host_page) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, host).await.unwrap() });

    let input = json!({"host_url": format!("http://{host_addr}/"), "frame_path": "/ui/sidebar"});
    let report =
        tokio::task::spawn_blocking(move || countersign_tests::run_node("browser.mjs", &input))
            .await
            .unwrap();
    assert_eq!(report["status"], "loaded 1 event(s)", "{report}");
    assert_eq!(report["settings"], "{}");
    assert!(
        report["events"][0]
            .as_str()
            .unwrap()
            .ends_with("entry publish"),
        "{report}"
    );
    assert_ne!(
        report["origin"].as_str().unwrap(),
        format!("http://{host_addr}"),
        "framed from another origin"
    );
}
