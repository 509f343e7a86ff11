//! `GET /v1/openapi.json`: the API described for tools, rendered from the route table, so it
//! lists exactly the routes the router serves.

use serde_json::{Map, Value, json};

use crate::routes::table::{Access, ROUTES};

/// Prefixes of features not built yet: every method answers 501 `not_implemented`.
pub(crate) const NOT_BUILT: &[&str] = &[];

pub(crate) fn document() -> Value {
    let mut paths = Map::new();
    for spec in ROUTES.iter().filter(|r| !r.test_only) {
        let (method, summary) = (spec.method.to_ascii_lowercase(), spec.summary);
        let path = spec.path.replace("{*", "{");
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let mut op = json!({
            "summary": summary,
            "parameters": params,
            "responses": {
                "2XX": { "description": "success" },
                "default": { "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
            },
        });
        match spec.access {
            Access::Public | Access::Metrics => op["security"] = json!([]),
            Access::Token => {}
            Access::Scope(s) => op["x-scaivault-scope"] = json!(s.as_str()),
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
    json!({
        "openapi": "3.1.0",
        "info": { "title": "ScaiVault", "version": env!("CARGO_PKG_VERSION") },
        "servers": [{ "url": "/" }],
        "security": [{ "bearer": [] }],
        "paths": paths,
        "x-not-implemented": NOT_BUILT,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "skt_… token" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": { "error": { "type": "object", "required": ["code", "message", "details", "request_id"],
                        "properties": {
                            "code": { "type": "string" }, "message": { "type": "string" },
                            "details": { "type": "object" }, "request_id": { "type": "string" },
                        } } },
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

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
}
