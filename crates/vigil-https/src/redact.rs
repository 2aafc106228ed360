//! Showing a URL without its secrets: userinfo and query values become `***`.
//!
//! Endpoints like `https://user:pass@host/ingest?api_key=…` carry
//! credentials. Every place this crate shows a URL (errors, logs, stats,
//! `Debug`) shows it through [`redact_url`].

/// What replaces a secret.
const MASK: &str = "***";

/// `url` with its userinfo, query values and fragment replaced by `***`.
///
/// Works on text, so a URL that does not parse is redacted too:
/// `https://u:p@h:1/p?k=v&flag#f` becomes `https://***@h:1/p?k=***&***#***`.
pub(crate) fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    match authority.rfind('@') {
        Some(at) => {
            out.push_str(MASK);
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let (before_fragment, fragment) = match tail.find('#') {
        Some(i) => (&tail[..i], Some(())),
        None => (tail, None),
    };
    match before_fragment.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let parts: Vec<String> = query
                .split('&')
                .map(|part| match part.split_once('=') {
                    Some((key, _)) => format!("{key}={MASK}"),
                    None if part.is_empty() => String::new(),
                    None => MASK.to_string(),
                })
                .collect();
            out.push_str(&parts.join("&"));
        }
        None => out.push_str(before_fragment),
    }
    if fragment.is_some() {
        out.push('#');
        out.push_str(MASK);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_the_rest_kept() {
        let cases = [
            ("https://127.0.0.1:8443/ingest", "https://127.0.0.1:8443/ingest"),
            ("https://user:pass@host:1/p", "https://***@host:1/p"),
            ("https://user@host/p", "https://***@host/p"),
            ("https://host/p?api_key=s3cr3t&tenant=t1", "https://host/p?api_key=***&tenant=***"),
            ("https://host/p?token", "https://host/p?***"),
            ("https://u:p@h/p?k=v#frag", "https://***@h/p?k=***#***"),
            ("https://u:p@h?k=v", "https://***@h?k=***"),
            ("u:p@h:1/p", "***@h:1/p"),
            ("not a url", "not a url"),
            ("https://a@b@host/x", "https://***@host/x"),
            ("", ""),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
