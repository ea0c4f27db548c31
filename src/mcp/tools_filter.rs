//! Removes the tools a policy refuses from answers that describe tools: `tools/list`
//! results (`result.tools`, with `nextCursor` and everything else kept) and results of the
//! gateway's semantic search tool (`result.structuredContent.tools`, and the JSON text of
//! `result.content` that repeats it).

use serde_json::Value;

use super::policy::ToolPolicy;

/// Which kind of answer a request gets back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// A `tools/list` result.
    List,
    /// A `tools/call` of the gateway's search tool.
    Search,
}

/// Filters one JSON-RPC response in place; returns how many tools were removed.
/// Error responses have nothing to filter.
pub fn filter_response(message: &mut Value, kind: Listing, policy: &ToolPolicy) -> usize {
    message
        .get_mut("result")
        .map_or(0, |result| filter_result(result, kind, policy))
}

/// Filters the `result` of a response as an answer of `kind`.
pub fn filter_result(result: &mut Value, kind: Listing, policy: &ToolPolicy) -> usize {
    match kind {
        Listing::List => result.get_mut("tools").map_or(0, |t| retain(t, policy)),
        Listing::Search => filter_search(result, policy),
    }
}

/// The names of the tools an answer lists (`result.tools[].name`).
pub fn listed_names(result: &Value) -> impl Iterator<Item = &str> {
    result
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|tool| tool.get("name").and_then(Value::as_str))
}

/// Keeps the allowed entries of an array of tool objects. Entries without a string
/// `name` cannot be judged and are removed (fail closed).
fn retain(tools: &mut Value, policy: &ToolPolicy) -> usize {
    let Some(list) = tools.as_array_mut() else {
        // Not an array: nothing a client would read as tools; replace it with none.
        *tools = Value::Array(Vec::new());
        return 1;
    };
    let before = list.len();
    list.retain(|tool| {
        tool.get("name")
            .and_then(Value::as_str)
            .is_some_and(|name| policy.allows(name))
    });
    before - list.len()
}

/// The search tool's result carries the tools twice: as `structuredContent.tools` and as
/// JSON text in `content[].text` (`{"tools": [...]}`). Both are filtered. A text block that
/// is not that JSON cannot be judged, so it is replaced by the filtered list (or dropped
/// when there is no structured list to show instead).
fn filter_search(result: &mut Value, policy: &ToolPolicy) -> usize {
    let mut removed = 0;
    if let Some(tools) = result
        .get_mut("structuredContent")
        .and_then(|s| s.get_mut("tools"))
    {
        removed += retain(tools, policy);
    }
    let structured = result
        .get("structuredContent")
        .filter(|s| s.get("tools").is_some())
        .cloned();
    let Some(content) = result.get_mut("content").and_then(Value::as_array_mut) else {
        return removed;
    };
    let mut kept = Vec::with_capacity(content.len());
    for mut block in content.drain(..) {
        let Some(text) = block.get("text").and_then(Value::as_str) else {
            kept.push(block);
            continue;
        };
        match serde_json::from_str::<Value>(text) {
            Ok(mut parsed) if parsed.get("tools").is_some() => {
                let n = parsed.get_mut("tools").map_or(0, |t| retain(t, policy));
                if n > 0 {
                    removed += n;
                    block["text"] = Value::String(parsed.to_string());
                }
                kept.push(block);
            }
            Ok(mut list @ Value::Array(_)) => {
                let n = retain(&mut list, policy);
                if n > 0 {
                    removed += n;
                    block["text"] = Value::String(list.to_string());
                }
                kept.push(block);
            }
            _ => {
                removed += 1;
                if let Some(structured) = &structured {
                    block["text"] = Value::String(structured.to_string());
                    kept.push(block);
                }
            }
        }
    }
    *content = kept;
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::config::PolicyConfig;
    use serde_json::json;

    fn policy() -> ToolPolicy {
        ToolPolicy::new(&PolicyConfig {
            allow_tools: vec![
                "DemoTarget___*".into(),
                "x_amz_bedrock_agentcore_search".into(),
            ],
            deny_tools: vec!["*___delete_*".into()],
            ..PolicyConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn tools_list_keeps_the_cursor_and_the_allowed_tools() {
        let mut m = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[
            {"name":"DemoTarget___echo","inputSchema":{}},
            {"name":"DemoTarget___delete_all"},
            {"name":"OtherTarget___echo"},
            {"description":"nameless"}
        ],"nextCursor":"page-2"}});
        assert_eq!(filter_response(&mut m, Listing::List, &policy()), 3);
        assert_eq!(
            m,
            json!({"jsonrpc":"2.0","id":1,"result":{"tools":[
                {"name":"DemoTarget___echo","inputSchema":{}}
            ],"nextCursor":"page-2"}})
        );
        let mut err = json!({"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}});
        assert_eq!(filter_response(&mut err, Listing::List, &policy()), 0);
    }

    #[test]
    fn search_results_are_filtered_in_both_places() {
        let tools = json!([{"name":"DemoTarget___echo"},{"name":"OtherTarget___secret"}]);
        let mut m = json!({"jsonrpc":"2.0","id":"s","result":{
            "structuredContent":{"tools":tools},
            "content":[
                {"type":"text","text":json!({"tools":tools}).to_string()},
                {"type":"text","text":"OtherTarget___secret is what you want"},
                {"type":"image","data":"..."}
            ],
            "isError":false}});
        assert_eq!(filter_response(&mut m, Listing::Search, &policy()), 3);
        let only = json!([{"name":"DemoTarget___echo"}]);
        assert_eq!(m["result"]["structuredContent"]["tools"], only);
        let texts: Vec<&str> = m["result"]["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect();
        assert_eq!(texts.len(), 2);
        for text in texts {
            assert_eq!(serde_json::from_str::<Value>(text).unwrap()["tools"], only);
        }
        assert_eq!(m["result"]["content"][2]["type"], "image");
    }

    #[test]
    fn unjudgeable_search_text_without_structured_tools_is_dropped() {
        let mut m = json!({"id":1,"result":{"content":[{"type":"text","text":"free text"}]}});
        filter_response(&mut m, Listing::Search, &policy());
        assert_eq!(m["result"]["content"], json!([]));
    }
}
