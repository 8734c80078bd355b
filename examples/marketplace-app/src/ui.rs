//! The UI location page: it embeds the app's session and calls the API with it.

use countersign::contentstack::session::AppSession;

/// The UI locations this app serves.
const LOCATIONS: [&str; 8] = [
    "config",
    "sidebar",
    "dashboard",
    "custom-field",
    "asset-sidebar",
    "full-page",
    "field-modifier",
    "rte",
];

/// The page of `location`, or `None` for an unknown location.
pub(crate) fn page(location: &str, session: &AppSession, token: &str) -> Option<String> {
    let location = LOCATIONS.iter().find(|l| **l == location)?;
    // The stack's api_key comes from a signed token, but it is text all the same: escaped.
    let stack = escape_html(session.stack_api_key().unwrap_or("(organization app)"));
    // The token is a JWT (base64url and dots) and the location a fixed name: nothing to escape.
    Some(format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="app-session" content="{token}">
<title>Marketplace App: {location}</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 1.5rem; }} pre {{ background: #f4f4f4; padding: .5rem; }}</style>
</head>
<body>
<h1>Marketplace App: {location}</h1>
<p>Stack <code>{stack}</code></p>
<p id="status">loading</p>
<h2>Settings</h2>
<pre id="settings"></pre>
<h2>Recent events</h2>
<ul id="events"></ul>
<script>
const session = document.querySelector('meta[name="app-session"]').content;
async function api(path, init = {{}}) {{
  const response = await fetch(path, {{ ...init, headers: {{ ...(init.headers || {{}}), authorization: `Bearer ${{session}}` }} }});
  if (!response.ok) throw new Error(`${{path}} answered ${{response.status}}`);
  return response.json();
}}
Promise.all([api('/api/settings'), api('/api/events')]).then(([settings, events]) => {{
  document.getElementById('settings').textContent = JSON.stringify(settings.settings);
  const list = document.getElementById('events');
  for (const e of events.events) {{
    const item = document.createElement('li');
    item.textContent = `${{e.triggered_at}} ${{e.module}} ${{e.event}}`;
    list.appendChild(item);
  }}
  document.getElementById('status').textContent = `loaded ${{events.events.length}} event(s)`;
}}).catch((error) => {{
  document.getElementById('status').textContent = `error: ${{error.message}}`;
}});
</script>
</body>
</html>
"#
    ))
}

/// `text` for HTML element content and quoted attribute values.
fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::escape_html;

    #[test]
    fn markup_in_a_stack_key_is_text() {
        assert_eq!(
            escape_html(r#"blt1"><script>alert('x')</script>&"#),
            "blt1&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"
        );
        assert_eq!(escape_html("blt_dev_stack"), "blt_dev_stack");
    }
}
