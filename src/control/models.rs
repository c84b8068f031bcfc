//! Parsing an upstream's `/v1/models` answer into model ids (DESIGN.md §1 "model cache").
//!
//! Accepts OpenAI's `{"data":[{"id":..}]}` and llama-server's `{"models":[{"name"|"model"|"id":..}]}`
//! shapes; ids are trimmed and deduplicated in the order the upstream listed them.

use serde_json::Value;

/// The ids in a `/v1/models` body, or why the body is not a model list.
pub fn parse_model_ids(body: &[u8]) -> Result<Vec<String>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let (list, keys): (&Vec<Value>, &[&str]) =
        if let Some(d) = v.get("data").and_then(Value::as_array) {
            (d, &["id"])
        } else if let Some(m) = v.get("models").and_then(Value::as_array) {
            (m, &["id", "model", "name"])
        } else {
            return Err("neither data[] nor models[] in the model list".into());
        };
    let mut ids: Vec<String> = Vec::with_capacity(list.len());
    for item in list {
        // Some servers list bare strings; take them as ids too.
        let id = match item {
            Value::String(s) => Some(s.as_str()),
            Value::Object(_) => keys
                .iter()
                .find_map(|k| item.get(*k).and_then(Value::as_str)),
            _ => None,
        };
        if let Some(id) = id.map(str::trim).filter(|s| !s.is_empty()) {
            if !ids.iter().any(|x| x == id) {
                ids.push(id.to_string());
            }
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_shape() {
        let b =
            br#"{"object":"list","data":[{"id":"a","object":"model"},{"id":" b "},{"id":"a"}]}"#;
        assert_eq!(parse_model_ids(b).unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn llama_server_shape() {
        let b =
            br#"{"models":[{"name":"n1","model":"m1"},{"model":"m2"},{"name":"n3"},{"id":"i4"}]}"#;
        assert_eq!(parse_model_ids(b).unwrap(), vec!["m1", "m2", "n3", "i4"]);
    }

    #[test]
    fn both_shapes_prefers_data() {
        let b = br#"{"models":[{"name":"x"}],"data":[{"id":"y"}]}"#;
        assert_eq!(parse_model_ids(b).unwrap(), vec!["y"]);
    }

    #[test]
    fn refuses_garbage() {
        assert!(parse_model_ids(b"<html>").is_err());
        assert!(parse_model_ids(b"{\"ok\":true}").is_err());
        assert_eq!(
            parse_model_ids(b"{\"data\":[]}").unwrap(),
            Vec::<String>::new()
        );
    }
}
