//! `/admin/openapi.json`: an OpenAPI 3.1 document built from the route table and from the
//! schemas derived on the body types.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::routes::{Answer, table};
use super::types::ErrorBody;

pub fn openapi_document() -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let error = generator.subschema_for::<ErrorBody>();
    let mut paths: Map<String, Value> = Map::new();
    for route in table() {
        let mut op = Map::new();
        op.insert("summary".into(), json!(route.summary));
        op.insert("operationId".into(), json!(operation_id(route.method.as_str(), route.path)));
        let params: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if let Some(request) = route.request {
            let schema = request(&mut generator);
            op.insert(
                "requestBody".into(),
                json!({"required": route.path != "/admin/snapshot" && route.path != "/admin/compact",
                       "content": {"application/json": {"schema": schema}}}),
            );
        }
        let ok = match &route.answer {
            Answer::Json(s) => {
                json!({"description": "OK", "content": {"application/json": {"schema": s(&mut generator)}}})
            }
            Answer::Other(ct) => json!({"description": "OK", "content": {*ct: {}}}),
        };
        let mut responses = Map::new();
        responses.insert("200".into(), ok);
        let err = |what: &str| json!({"description": what, "content": {"application/json": {"schema": error.clone()}}});
        if let Some(role) = route.role {
            op.insert("security".into(), json!([{"bearerAuth": []}]));
            op.insert("x-required-role".into(), json!(role.as_str()));
            responses.insert("401".into(), err("missing, malformed, expired or wrongly signed token"));
            responses.insert("403".into(), err(&format!("the token's role is below {role}")));
            responses.insert("413".into(), err("request body over 1 MiB"));
            responses.insert("4XX".into(), err("the request cannot be served (the body says why)"));
            responses.insert("5XX".into(), err("the cluster cannot serve it right now (the body says why)"));
        } else {
            responses.insert("503".into(), err("unhealthy"));
        }
        op.insert("responses".into(), Value::Object(responses));
        let entry = paths.entry(route.path.to_string()).or_insert_with(|| json!({}));
        if let Some(obj) = entry.as_object_mut() {
            obj.insert(route.method.as_str().to_ascii_lowercase(), Value::Object(op));
        }
    }
    let schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Chronik admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every Chronik process serves these routes on its HTTP port. Tokens: `chronik-server admin token --role viewer|operator|admin`."
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
        }
    })
}

/// `GET /admin/topics/{name}` → `get_admin_topics_name`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    for part in path.split(|c: char| !c.is_ascii_alphanumeric()).filter(|p| !p.is_empty()) {
        id.push('_');
        id.push_str(part);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_document_with_resolvable_schemas() {
        let doc = openapi_document();
        for route in table() {
            let op = &doc["paths"][route.path][route.method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{} {} missing", route.method, route.path);
            assert_eq!(op["x-required-role"].as_str(), route.role.map(|r| r.as_str()));
        }
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"").skip(1) {
            let target = &reference[..reference.find('"').unwrap_or(0)];
            let name = target.trim_start_matches("#/components/schemas/");
            assert!(doc["components"]["schemas"][name].is_object(), "dangling $ref {target}");
        }
        assert!(doc["components"]["schemas"]["TransferLeader"]["properties"]["target_node_id"].is_object());
    }
}
