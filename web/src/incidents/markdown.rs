//! Responders' notes: Markdown rendered to HTML that is safe to show. Raw HTML in the
//! source is shown as text, link targets other than `http`, `https`, `mailto` and
//! same-site paths become `#`, and images become plain links (no remote loads).

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd, html};

fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    let lower = url.trim().to_ascii_lowercase();
    let same_site = (lower.starts_with('/') && !lower.starts_with("//")) || lower.starts_with('#');
    if same_site
        || lower.starts_with("https://")
        || lower.starts_with("http://")
        || lower.starts_with("mailto:")
    {
        url
    } else {
        CowStr::Borrowed("#")
    }
}

/// Sanitised HTML for a note's Markdown.
pub fn render(markdown: &str) -> String {
    let events = Parser::new_ext(
        markdown,
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH,
    )
    .map(|event| match event {
        Event::Html(text) | Event::InlineHtml(text) => Event::Text(text),
        Event::Start(Tag::HtmlBlock) => Event::Start(Tag::Paragraph),
        Event::End(TagEnd::HtmlBlock) => Event::End(TagEnd::Paragraph),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        })
        | Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        Event::End(TagEnd::Image) => Event::End(TagEnd::Link),
        other => other,
    });
    let mut out = String::new();
    html::push_html(&mut out, events);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_renders_and_nothing_executes() {
        let html = render("**Contained** the pod. See [runbook](https://wiki.example/r).");
        assert!(html.contains("<strong>Contained</strong>"), "{html}");
        assert!(html.contains(r#"href="https://wiki.example/r""#), "{html}");
        for (source, forbidden) in [
            ("<script>alert(1)</script>", "<script"),
            ("<img src=x onerror=alert(1)>", "<img"),
            ("[x](javascript:alert(1))", "javascript:"),
            ("[x]( JaVaScRiPt:alert(1))", "alert(1)\""),
            ("![pixel](https://tracker.example/p.gif)", "<img"),
            ("<div onclick=x>hi</div>", "<div"),
            ("[x](data:text/html;base64,PHNjcmlwdD4=)", "data:"),
        ] {
            let html = render(source);
            assert!(!html.contains(forbidden), "{source} -> {html}");
        }
        assert!(render("<b>x</b>").contains("&lt;b&gt;"));
    }
}
