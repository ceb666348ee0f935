//! Splits the outer structure of a push body (`{"tenant": ..., "records": [...]}`) into
//! raw member and element texts without parsing what is inside them, so that a record
//! the JSON parser refuses (too deep, a lone surrogate) fails alone instead of making the
//! whole body "not JSON".
//!
//! The scanner is iterative (an explicit bracket stack, no recursion) and linear in the
//! body, which is itself bounded (256 KiB). Inside a value it only tracks strings and
//! matching brackets: the value's own syntax is left to the JSON parser that reads it.
//! Errors name a byte position, never content.

/// The members of a JSON object as `(decoded name, raw value text)`, in order.
pub(super) fn object(text: &str) -> Result<Vec<(String, &str)>, String> {
    let b = text.as_bytes();
    let mut i = expect(b, ws(b, 0), b'{')?;
    let mut members = Vec::new();
    i = ws(b, i);
    if b.get(i) == Some(&b'}') {
        return end(b, i + 1).map(|()| members);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return Err(format!("expected a member name at byte {i}"));
        }
        let key_end = string(b, i)?;
        let key: String = serde_json::from_str(&text[i..key_end])
            .map_err(|e| format!("member name at byte {i}: {e}"))?;
        i = expect(b, ws(b, key_end), b':')?;
        let start = ws(b, i);
        let stop = value(b, start)?;
        members.push((key, &text[start..stop]));
        i = ws(b, stop);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b'}') => return end(b, i + 1).map(|()| members),
            _ => return Err(format!("expected , or }} at byte {i}")),
        }
    }
}

/// The elements of a JSON array as raw texts, or `None` when `text` is not an array.
pub(super) fn array(text: &str) -> Result<Option<Vec<&str>>, String> {
    let b = text.as_bytes();
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return Ok(None);
    }
    let mut items = Vec::new();
    i = ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return end(b, i + 1).map(|()| Some(items));
    }
    loop {
        let stop = value(b, i)?;
        items.push(&text[i..stop]);
        i = ws(b, stop);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b']') => return end(b, i + 1).map(|()| Some(items)),
            _ => return Err(format!("expected , or ] at byte {i}")),
        }
    }
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

fn expect(b: &[u8], i: usize, c: u8) -> Result<usize, String> {
    if b.get(i) == Some(&c) {
        Ok(i + 1)
    } else {
        Err(format!("expected {} at byte {i}", c as char))
    }
}

/// Only whitespace may follow the outer value.
fn end(b: &[u8], i: usize) -> Result<(), String> {
    let i = ws(b, i);
    if i < b.len() {
        return Err(format!("trailing characters at byte {i}"));
    }
    Ok(())
}

/// The end (exclusive) of the string starting at `i` (an opening quote). Escapes are
/// skipped, not decoded. Multi-byte UTF-8 never contains an ASCII byte, so looking at
/// single bytes finds the real closing quote.
fn string(b: &[u8], i: usize) -> Result<usize, String> {
    let mut j = i + 1;
    loop {
        match b.get(j) {
            None => return Err(format!("unterminated string from byte {i}")),
            Some(b'\\') => j += 2,
            Some(b'"') => return Ok(j + 1),
            Some(_) => j += 1,
        }
    }
}

/// The end (exclusive) of the value starting at `i`.
fn value(b: &[u8], i: usize) -> Result<usize, String> {
    match b.get(i) {
        Some(b'"') => string(b, i),
        Some(b'{' | b'[') => {
            let mut open: Vec<u8> = Vec::new();
            let mut j = i;
            loop {
                match b.get(j) {
                    None => return Err(format!("unclosed bracket from byte {i}")),
                    Some(b'"') => {
                        j = string(b, j)?;
                        continue;
                    }
                    Some(&c @ (b'{' | b'[')) => open.push(c),
                    Some(&c @ (b'}' | b']')) => {
                        let want = if c == b'}' { b'{' } else { b'[' };
                        if open.pop() != Some(want) {
                            return Err(format!("mismatched {} at byte {j}", c as char));
                        }
                        if open.is_empty() {
                            return Ok(j + 1);
                        }
                    }
                    Some(_) => {}
                }
                j += 1;
            }
        }
        _ => {
            // A scalar (number, true, false, null): up to the next delimiter.
            let mut j = i;
            while let Some(c) = b.get(j) {
                if matches!(
                    c,
                    b',' | b']' | b'}' | b':' | b'[' | b'{' | b'"' | b' ' | b'\t' | b'\n' | b'\r'
                ) {
                    break;
                }
                j += 1;
            }
            if j == i {
                return Err(format!("expected a value at byte {i}"));
            }
            Ok(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_elements_are_split_at_the_outer_level_only() {
        let body = r#" {"tenant" : "a\"}", "records":[ {"x":[1,"]"]} , 2,"s" ] } "#;
        let m = object(body).unwrap();
        assert_eq!(m[0], ("tenant".to_string(), r#""a\"}""#));
        let items = array(m[1].1).unwrap().unwrap();
        assert_eq!(items, vec![r#"{"x":[1,"]"]}"#, "2", r#""s""#]);
        assert_eq!(array("{}").unwrap(), None);
        assert_eq!(array("[ ]").unwrap(), Some(vec![]));
    }

    #[test]
    fn a_deep_or_odd_element_stays_inside_its_own_slice() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let text = format!(r#"[{{"a":"\ud800"}},{deep},{{"b":1}}]"#);
        let items = array(&text).unwrap().unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0], r#"{"a":"\ud800"}"#);
        assert_eq!(items[1].len(), 20_000);
        assert_eq!(items[2], r#"{"b":1}"#);
    }

    #[test]
    fn a_broken_outer_structure_is_an_error_with_a_position() {
        for bad in [
            "",
            "nope",
            "[]",
            r#"{"a":1"#,
            r#"{"a":1}x"#,
            r#"{"a":[1}"#,
            r#"{"a" 1}"#,
            r#"{"a":}"#,
            r#"{"a":"x}"#,
            r#"{a:1}"#,
            r#"{"\ud800":1}"#,
        ] {
            assert!(object(bad).is_err(), "{bad:?}");
        }
        for bad in ["[1,]", "[1 2]", "[[1]", "[1]]"] {
            assert!(array(bad).is_err(), "{bad:?}");
        }
    }
}
