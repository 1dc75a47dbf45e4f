//! S3 error responses built outside s3s, before it sees a request (a refused presigned
//! URL, an anonymous write, a CORS preflight): S3's XML error body, escaped.

use http::{HeaderValue, StatusCode};
use s3s::HttpResponse;

/// An S3 error response (status, code, message) with an XML body.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message></Error>",
        xml_escape(message)
    );
    let mut resp = HttpResponse::new(s3s::Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    resp
}

/// `s` as XML character data or attribute text.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_escaped_in_the_xml_body() {
        let r = error_response(StatusCode::FORBIDDEN, "AccessDenied", "a <b> & \"c\"");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.headers()[http::header::CONTENT_TYPE], "application/xml");
        let body = r.body().bytes().unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains(
                "<Code>AccessDenied</Code><Message>a &lt;b&gt; &amp; &quot;c&quot;</Message>"
            ),
            "{text}"
        );
    }
}
