use axum::http::header;
use axum::response::IntoResponse;

/// The one stylesheet, embedded in the binary.
pub async fn css_get() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../../../static/ward.css"),
    )
}
