//! `GET /v1/openapi.json`: the API described for tools, rendered from the route table, so it
//! lists exactly the routes the router serves.

use serde_json::{Map, Value, json};

use crate::routes::table::{Access, ROUTES};

/// Prefixes of features not built yet: every method answers 501 `not_implemented`.
pub(crate) const NOT_BUILT: &[&str] = &[];

pub(crate) fn document() -> Value {
    // Request bodies are described by the engine's and the handlers' own request types (the
    // ones that parse them), so the document cannot describe a body the server would refuse.
    let mut schemas = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let mut paths = Map::new();
    for spec in ROUTES.iter().filter(|r| !r.test_only) {
        let (method, summary) = (spec.method.to_ascii_lowercase(), spec.summary);
        let path = spec.path.replace("{*", "{");
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let success = match spec.response {
            Some(schema) => {
                json!({ "description": "success", "content": { "application/json": { "schema": schema(&mut schemas) } } })
            }
            None => json!({ "description": "success" }),
        };
        let mut op = json!({
            "summary": summary,
            "parameters": params,
            "responses": {
                "2XX": success,
                "default": { "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
            },
        });
        if let Some(schema) = spec.request {
            op["requestBody"] = json!({
                "required": spec.method != "POST" || !spec.path.ends_with("/rotate"),
                "content": { "application/json": { "schema": schema(&mut schemas) } },
            });
        } else if spec.binary_body {
            op["requestBody"] = json!({
                "required": true,
                "content": { "application/octet-stream": { "schema": { "type": "string", "contentMediaType": "application/octet-stream" } } },
            });
        }
        match spec.access {
            Access::Public | Access::Metrics => op["security"] = json!([]),
            Access::Token => {}
            Access::Scope(s) => op["x-scaivault-scope"] = json!(s.as_str()),
            Access::Both(a, b) => {
                op["x-scaivault-scope"] = json!(format!("{} {}", a.as_str(), b.as_str()))
            }
            Access::Tail(tails) => {
                op["x-scaivault-scope"] = json!(
                    tails
                        .iter()
                        .map(|(t, s, _)| json!({ "path": t, "scope": s.as_str() }))
                        .collect::<Vec<_>>()
                )
            }
        }
        paths.entry(path).or_insert_with(|| json!({}))[method.as_str()] = op;
    }
    let mut components = Map::new();
    components.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": { "error": { "type": "object", "required": ["code", "message", "details", "request_id"],
                "properties": {
                    "code": { "type": "string" }, "message": { "type": "string" },
                    "details": { "type": "object" }, "request_id": { "type": "string" },
                } } },
        }),
    );
    components.extend(schemas.take_definitions(true));
    json!({
        "openapi": "3.1.0",
        "info": { "title": "ScaiVault", "version": env!("CARGO_PKG_VERSION") },
        "servers": [{ "url": "/" }],
        "security": [{ "bearer": [] }],
        "paths": paths,
        "x-not-implemented": NOT_BUILT,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "skt_… token" } },
            "schemas": components,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::ROUTES;

    #[test]
    fn the_document_lists_exactly_the_routes_of_the_table() {
        let doc = super::document();
        let mut documented = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for m in ops.as_object().unwrap().keys() {
                documented.insert((m.to_uppercase(), path.clone()));
            }
        }
        let table: BTreeSet<(String, String)> = ROUTES
            .iter()
            .filter(|r| !r.test_only)
            .map(|r| (r.method.to_owned(), r.path.replace("{*", "{")))
            .collect();
        assert_eq!(documented, table);
        assert_eq!(
            doc["paths"]["/v1/secrets/{path}"]["put"]["parameters"][0]["name"],
            "path"
        );
        assert_eq!(
            doc["paths"]["/v1/sys/restore"]["post"]["x-scaivault-scope"],
            "admin"
        );
    }

    /// Every route that takes a body says what it is, and every schema it points to is in
    /// the document.
    #[test]
    fn bodies_have_schemas_that_resolve() {
        let doc = super::document();
        // Routes whose POST/PUT/PATCH carries no body: acts named by their path alone.
        const NO_BODY: &[&str] = &[
            "/v1/sys/seal",
            "/v1/sys/rotate-key",
            "/v1/sys/verify",
            "/v1/restore/{path}",
            "/v1/rotate/{path}",
            "/v1/plugins/verify",
            "/v1/rotation/policies/{id}/enable",
            "/v1/rotation/policies/{id}/disable",
            "/v1/webhooks/{id}/test",
            "/v1/secret-policies/{id}/generate",
            "/v1/auth/token/revoke-self",
            "/v1/auth/token/renew-self",
        ];
        let mut with_body = 0;
        for r in ROUTES.iter().filter(|r| !r.test_only) {
            let path = r.path.replace("{*", "{");
            let op = &doc["paths"][&path][r.method.to_ascii_lowercase()];
            let has = op.get("requestBody").is_some();
            if matches!(r.method, "POST" | "PUT" | "PATCH") && !NO_BODY.contains(&path.as_str()) {
                assert!(has, "{} {path} has no request body schema", r.method);
                with_body += 1;
            } else {
                assert!(
                    !has,
                    "{} {path} documents a body it does not take",
                    r.method
                );
            }
        }
        assert!(with_body > 25, "{with_body}");
        let text = doc.to_string();
        let needle = "\"$ref\":\"#/components/schemas/";
        for (i, _) in text.match_indices(needle) {
            let name: String = text[i + needle.len()..]
                .chars()
                .take_while(|c| *c != '"')
                .collect();
            assert!(
                doc["components"]["schemas"].get(&name).is_some(),
                "{name} is referenced but not defined"
            );
        }
        let write = &doc["components"]["schemas"]["WriteRequest"];
        assert_eq!(write["required"], json!(["data"]), "{write}");
        assert_eq!(write["additionalProperties"], false, "{write}");
    }
}
