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

/// Search as you type on the patient list (progressive enhancement).
pub async fn search_js_get() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../../../static/search.js"),
    )
}
