//! `wasi:http/types.fields`: header lists and their rules.
//!
//! Names and values are checked with the `http` crate's own parsers (the
//! ones hyper applies when it writes the response), so a header the guest
//! managed to set can always be sent: a name must be an HTTP token, a value
//! must not contain CR, LF, NUL or other control bytes except tab. Names
//! are stored lower-cased, as HTTP/1.1 treats them case-insensitively and
//! as wasmtime reports them.

use hyper::http::{HeaderName, HeaderValue};

/// Hop-by-hop headers: they describe one connection, which the server
/// manages itself, so a guest may not set them (and they are dropped from
/// headers handed to `outgoing-response`'s constructor).
const FORBIDDEN: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Most entries one `fields` may hold, and most bytes of names and values:
/// far above any real response, low enough that a guest cannot use header
/// lists to exhaust a small device's memory.
pub(crate) const MAX_ENTRIES: usize = 1024;
pub(crate) const MAX_BYTES: usize = 64 * 1024;

/// `wasi:http/types.header-error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderError {
    InvalidSyntax,
    Forbidden,
    Immutable,
}

impl HeaderError {
    pub(crate) fn case(self) -> &'static str {
        match self {
            HeaderError::InvalidSyntax => "invalid-syntax",
            HeaderError::Forbidden => "forbidden",
            HeaderError::Immutable => "immutable",
        }
    }
}

/// Why a `fields` operation did not happen: a `header-error` for the guest,
/// or a limit that ends the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FieldsError {
    Header(HeaderError),
    TooLarge,
}

impl From<HeaderError> for FieldsError {
    fn from(e: HeaderError) -> Self {
        FieldsError::Header(e)
    }
}

pub(crate) fn is_forbidden(name: &HeaderName) -> bool {
    FORBIDDEN.contains(&name.as_str())
}

pub(crate) fn parse_name(name: &str) -> Result<HeaderName, HeaderError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| HeaderError::InvalidSyntax)
}

pub(crate) fn parse_value(value: &[u8]) -> Result<HeaderValue, HeaderError> {
    HeaderValue::from_bytes(value).map_err(|_| HeaderError::InvalidSyntax)
}

/// A header list in insertion order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fields {
    entries: Vec<(HeaderName, HeaderValue)>,
    bytes: usize,
    /// Request headers and the headers of a response or request seen
    /// through its `headers()` accessor may not be changed.
    pub(crate) immutable: bool,
}

impl Fields {
    /// Headers as received from the network (already valid; forbidden
    /// names are kept, the guest may want to see them).
    pub(crate) fn from_http(map: &hyper::http::HeaderMap) -> Fields {
        let mut f = Fields::default();
        for (n, v) in map {
            f.bytes += n.as_str().len() + v.len();
            f.entries.push((n.clone(), v.clone()));
        }
        f
    }

    /// `fields.from-list`: every entry is checked, the first bad one fails
    /// the whole list.
    pub(crate) fn from_list(list: Vec<(String, Vec<u8>)>) -> Result<Fields, FieldsError> {
        let mut f = Fields::default();
        for (n, v) in list {
            f.append(&n, &v)?;
        }
        Ok(f)
    }

    /// Bytes of names and values held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn entries(&self) -> &[(HeaderName, HeaderValue)] {
        &self.entries
    }

    /// A mutable copy (`fields.clone` of immutable fields is mutable).
    pub(crate) fn mutable_copy(&self) -> Fields {
        Fields {
            immutable: false,
            ..self.clone()
        }
    }

    /// An immutable copy: what `incoming-request.headers` and
    /// `outgoing-response.headers` hand out. A copy is indistinguishable
    /// from a view, since neither it nor its source can change.
    pub(crate) fn immutable_copy(&self) -> Fields {
        Fields {
            immutable: true,
            ..self.clone()
        }
    }

    pub(crate) fn get(&self, name: &str) -> Vec<&HeaderValue> {
        match parse_name(name) {
            Ok(n) => self
                .entries
                .iter()
                .filter(|(k, _)| *k == n)
                .map(|(_, v)| v)
                .collect(),
            // WASI: a syntactically invalid name is simply not present.
            Err(_) => Vec::new(),
        }
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        !self.get(name).is_empty()
    }

    /// The checks every mutation makes, in wasmtime's order: syntax, then
    /// forbidden, then mutability.
    fn check_name(&self, name: &str) -> Result<HeaderName, HeaderError> {
        let n = parse_name(name)?;
        if is_forbidden(&n) {
            return Err(HeaderError::Forbidden);
        }
        Ok(n)
    }

    pub(crate) fn set(&mut self, name: &str, values: &[Vec<u8>]) -> Result<(), FieldsError> {
        let n = self.check_name(name)?;
        let values = values
            .iter()
            .map(|v| parse_value(v))
            .collect::<Result<Vec<_>, _>>()?;
        if self.immutable {
            return Err(HeaderError::Immutable.into());
        }
        let removed: usize = self
            .entries
            .iter()
            .filter(|(k, _)| *k == n)
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        let added: usize = values.iter().map(|v| n.as_str().len() + v.len()).sum();
        let count = self.entries.iter().filter(|(k, _)| *k != n).count() + values.len();
        if count > MAX_ENTRIES || self.bytes - removed + added > MAX_BYTES {
            return Err(FieldsError::TooLarge);
        }
        self.entries.retain(|(k, _)| *k != n);
        self.bytes = self.bytes - removed + added;
        self.entries
            .extend(values.into_iter().map(|v| (n.clone(), v)));
        Ok(())
    }

    pub(crate) fn delete(&mut self, name: &str) -> Result<(), FieldsError> {
        let n = self.check_name(name)?;
        if self.immutable {
            return Err(HeaderError::Immutable.into());
        }
        let mut freed = 0;
        self.entries.retain(|(k, v)| {
            let keep = *k != n;
            if !keep {
                freed += k.as_str().len() + v.len();
            }
            keep
        });
        self.bytes -= freed;
        Ok(())
    }

    pub(crate) fn append(&mut self, name: &str, value: &[u8]) -> Result<(), FieldsError> {
        let n = self.check_name(name)?;
        let v = parse_value(value)?;
        if self.immutable {
            return Err(HeaderError::Immutable.into());
        }
        let size = n.as_str().len() + v.len();
        if self.entries.len() >= MAX_ENTRIES || self.bytes + size > MAX_BYTES {
            return Err(FieldsError::TooLarge);
        }
        self.bytes += size;
        self.entries.push((n, v));
        Ok(())
    }

    /// Drops hop-by-hop headers (from headers that came from a request and
    /// are now meant for a response).
    pub(crate) fn remove_forbidden(&mut self) {
        self.entries.retain(|(k, _)| !is_forbidden(k));
        self.bytes = self
            .entries
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
    }

    /// The `content-length` a response declares, if any; `Err` when it is
    /// present but not one valid number.
    pub(crate) fn content_length(&self) -> Result<Option<u64>, String> {
        let mut found: Option<u64> = None;
        for (k, v) in &self.entries {
            if k != hyper::http::header::CONTENT_LENGTH {
                continue;
            }
            let n = v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| "invalid content-length header".to_string())?;
            if found.is_some_and(|f| f != n) {
                return Err("conflicting content-length headers".into());
            }
            found = Some(n);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_tokens_values_have_no_line_breaks() {
        let mut f = Fields::default();
        f.append("X-Thing", b"a b\tc").unwrap();
        assert_eq!(f.entries()[0].0.as_str(), "x-thing");
        for bad in ["", "bad name", "a:b", "caf\u{e9}", "x\r\ny"] {
            assert_eq!(
                f.append(bad, b"v"),
                Err(HeaderError::InvalidSyntax.into()),
                "{bad:?}"
            );
        }
        for bad in [&b"a\r\nb"[..], b"a\nb", b"a\0b", b"\x01"] {
            assert_eq!(
                f.append("x", bad),
                Err(HeaderError::InvalidSyntax.into()),
                "{bad:?}"
            );
        }
        assert!(f.get("bad name").is_empty());
        assert!(!f.has("bad name"));
    }

    #[test]
    fn hop_by_hop_headers_are_forbidden() {
        let mut f = Fields::default();
        for n in [
            "connection",
            "Keep-Alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
        ] {
            assert_eq!(f.append(n, b"x"), Err(HeaderError::Forbidden.into()));
            assert_eq!(
                f.set(n, &[b"x".to_vec()]),
                Err(HeaderError::Forbidden.into())
            );
            assert_eq!(f.delete(n), Err(HeaderError::Forbidden.into()));
        }
        assert!(Fields::from_list(vec![("connection".into(), b"close".to_vec())]).is_err());
    }

    #[test]
    fn set_get_delete_and_order() {
        let mut f = Fields::from_list(vec![
            ("a".into(), b"1".to_vec()),
            ("B".into(), b"2".to_vec()),
            ("a".into(), b"3".to_vec()),
        ])
        .unwrap();
        assert_eq!(f.get("A").len(), 2);
        f.set("a", &[b"9".to_vec()]).unwrap();
        let names: Vec<_> = f
            .entries()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect();
        assert_eq!(names, vec![("b", &b"2"[..]), ("a", &b"9"[..])]);
        f.delete("b").unwrap();
        assert!(!f.has("b"));
        assert_eq!(f.bytes, 2);
    }

    #[test]
    fn immutable_fields_refuse_changes_after_syntax_checks() {
        let mut f = Fields::default().immutable_copy();
        assert_eq!(f.append("x", b"1"), Err(HeaderError::Immutable.into()));
        assert_eq!(
            f.append("bad name", b"1"),
            Err(HeaderError::InvalidSyntax.into())
        );
        assert_eq!(
            f.append("upgrade", b"1"),
            Err(HeaderError::Forbidden.into())
        );
        let mut c = f.mutable_copy();
        c.append("x", b"1").unwrap();
    }

    #[test]
    fn size_limits() {
        let mut f = Fields::default();
        let big = vec![b'v'; MAX_BYTES];
        assert_eq!(f.append("x", &big), Err(FieldsError::TooLarge));
        for i in 0..MAX_ENTRIES {
            f.append("x", i.to_string().as_bytes()).unwrap();
        }
        assert_eq!(f.append("x", b"1"), Err(FieldsError::TooLarge));
    }

    #[test]
    fn content_length() {
        let f = Fields::from_list(vec![("content-length".into(), b"12".to_vec())]).unwrap();
        assert_eq!(f.content_length(), Ok(Some(12)));
        let f = Fields::from_list(vec![("content-length".into(), b"x".to_vec())]).unwrap();
        assert!(f.content_length().is_err());
        assert_eq!(Fields::default().content_length(), Ok(None));
    }
}
