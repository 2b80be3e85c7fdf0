//! Small shared pages: a titled message, the rate-limit page.

use askama::Template;
use axum::response::Html;

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
    link: Option<(&'a str, &'a str)>,
}

fn render(page: &MessagePage<'_>) -> Html<String> {
    Html(page.render().unwrap_or_else(|_| page.message.to_owned()))
}

/// A page with a heading and one paragraph.
pub fn message(title: &str, message: &str) -> Html<String> {
    render(&MessagePage {
        title,
        message,
        link: None,
    })
}

/// A page with a heading, one paragraph and a link onward.
pub fn message_with_link(title: &str, message: &str, href: &str, label: &str) -> Html<String> {
    render(&MessagePage {
        title,
        message,
        link: Some((href, label)),
    })
}

/// The 429 page.
pub fn too_many_requests(wait_secs: u64) -> Html<String> {
    let minutes = wait_secs.div_ceil(60);
    let when = if minutes <= 1 {
        "in a minute".to_owned()
    } else {
        format!("in {minutes} minutes")
    };
    let text = format!(
        "There have been too many attempts from here or for this address. For your security, please try again {when}."
    );
    render(&MessagePage {
        title: "Too many attempts",
        message: &text,
        link: None,
    })
}
