//! The OpenAPI document and a validator for the subset of JSON Schema it uses: every call of
//! [`super::api::Api::call`] checks its answer with [`check_documented`].

use failmail::api;
use serde_json::Value;

use super::api::HttpResponse;

/// The OpenAPI document the server serves at `/api/openapi.json`.
pub(crate) fn document() -> &'static Value {
    api::openapi::document()
}

/// `value`, or what its local `$ref` points to (followed to the end).
pub(crate) fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("only local $refs: {reference}"));
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("$ref {reference} resolves"));
            resolve(doc, target)
        }
        None => value,
    }
}

/// Errors of `value` against `schema` (empty when valid). Supports the keywords the document
/// uses: $ref, type, nullable, enum, properties, required, additionalProperties: false, items,
/// oneOf, minimum, maximum. Any other keyword fails loudly, so the validator never silently
/// ignores a constraint the document states.
pub(crate) fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let schema = resolve(doc, schema);
    let object = schema.as_object().expect("a schema is an object");
    const KNOWN: [&str; 16] = [
        "type",
        "nullable",
        "enum",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "oneOf",
        "discriminator",
        "minimum",
        "maximum",
        "description",
        "format",
        "$ref",
        "example",
        "title",
    ];
    for key in object.keys() {
        assert!(
            KNOWN.contains(&key.as_str()),
            "unsupported keyword {key} at {at}"
        );
    }
    let mut errors = Vec::new();
    if value.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
        return errors;
    }
    if let Some(variants) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = variants
            .iter()
            .filter(|v| validate(doc, v, value, at).is_empty())
            .count();
        if matching != 1 {
            errors.push(format!("{at}: {matching} oneOf variants match {value}"));
        }
    }
    if let Some(kind) = schema.get("type").and_then(Value::as_str) {
        let ok = match kind {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_u64() || value.is_i64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            other => panic!("unknown type {other}"),
        };
        if !ok {
            errors.push(format!("{at}: {value} is not of type {kind}"));
            return errors;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            errors.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if n < min {
                errors.push(format!("{at}: {n} < minimum {min}"));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if n > max {
                errors.push(format!("{at}: {n} > maximum {max}"));
            }
        }
    }
    if let Some(fields) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = name.as_str().unwrap();
            if !fields.contains_key(name) {
                errors.push(format!("{at}: required field {name} is missing"));
            }
        }
        for (name, field) in fields {
            match properties.and_then(|p| p.get(name)) {
                Some(field_schema) => {
                    errors.extend(validate(doc, field_schema, field, &format!("{at}.{name}")))
                }
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    errors.push(format!("{at}: field {name} is not documented"))
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(elements)) = (schema.get("items"), value.as_array()) {
        for (i, element) in elements.iter().enumerate() {
            errors.extend(validate(doc, items, element, &format!("{at}[{i}]")));
        }
    }
    errors
}

/// The documented operation for `method` and a concrete `path` (query string ignored).
pub(crate) fn operation(method: &str, path: &str) -> (&'static str, &'static Value) {
    let doc = document();
    let path = path.split('?').next().unwrap();
    let segments: Vec<&str> = path.split('/').collect();
    for (template, item) in doc["paths"].as_object().unwrap() {
        let parts: Vec<&str> = template.split('/').collect();
        let matches = parts.len() == segments.len()
            && parts
                .iter()
                .zip(&segments)
                .all(|(t, s)| t == s || (t.starts_with('{') && t.ends_with('}')));
        if matches {
            if let Some(op) = item.get(method.to_ascii_lowercase()) {
                return (template.as_str(), op);
            }
        }
    }
    panic!("{method} {path} is not documented in /api/openapi.json")
}

/// Checks one real answer against the document.
pub(crate) fn check_documented(method: &str, path: &str, response: &HttpResponse) {
    let doc = document();
    let (template, op) = operation(method, path);
    let status = response.status.to_string();
    let documented = op["responses"]
        .get(&status)
        .map(|r| resolve(doc, r))
        .unwrap_or_else(|| {
            panic!(
                "{method} {template} answered {status}, which is not documented: {:?}",
                String::from_utf8_lossy(&response.body)
            )
        });
    let Some(content) = documented.get("content").and_then(Value::as_object) else {
        assert!(
            response.body.is_empty(),
            "{method} {template} {status} has a body but documents none"
        );
        return;
    };
    let media = response
        .header("content-type")
        .unwrap_or_else(|| panic!("{method} {template} {status} has no Content-Type"))
        .split(';')
        .next()
        .unwrap()
        .trim()
        .to_ascii_lowercase();
    let schema = &content.get(&media).unwrap_or_else(|| {
        panic!("{method} {template} {status}: Content-Type {media} is not documented")
    })["schema"];
    let value = if media == "application/json" {
        response.json()
    } else {
        match String::from_utf8(response.body.clone()) {
            Ok(text) => Value::String(text),
            Err(_) => return, // binary
        }
    };
    let errors = validate(doc, schema, &value, "body");
    assert!(
        errors.is_empty(),
        "{method} {template} {status} does not match its schema:\n  {}\nbody: {value}",
        errors.join("\n  ")
    );
}
