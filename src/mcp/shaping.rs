//! The route's own quota (`[route.shaping]`): a rate for everything the route sends to
//! the gateway and rates per tool glob, so that a fleet stays under the gateway's quota
//! before the gateway has to throttle. What goes over is answered like the gateway's
//! throttle (`-32003`, `data.retryAfter`, `Retry-After`), so agents' retry policies treat
//! both the same.
//!
//! The route rate counts requests sent upstream (answers from coalescing or the cache
//! cost nothing); a tool's rate counts its `tools/call`s, which always go upstream.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use super::glob::Glob;
use super::limits::RateLimit;
use super::traffic::{ShapingConfig, ToolRate};
use crate::exchange::error::ProxyError;
use crate::ops::metrics::{metrics, ReasonLabels};

pub struct Shaping {
    route: Option<RateLimit>,
    tools: Vec<(Glob, RateLimit)>,
    answered: Counter,
}

impl Shaping {
    pub fn new(route: &str, config: &ShapingConfig) -> Result<Shaping, String> {
        config.validate()?;
        let rate = (config.requests_per_second > 0.0).then(|| {
            let burst = config
                .burst
                .unwrap_or_else(|| config.requests_per_second.ceil().max(1.0) as u32);
            RateLimit::new(config.requests_per_second, burst)
        });
        let mut tools = Vec::with_capacity(config.tools.len());
        for (glob, rate) in &config.tools {
            let glob = Glob::new(glob)?;
            let rate = ToolRate::parse(rate)?;
            // A budget of `count` per period, all of it usable at once.
            tools.push((glob, RateLimit::new(rate.per_second(), rate.count)));
        }
        Ok(Shaping {
            route: rate,
            tools,
            answered: metrics()
                .throttled_locally
                .get_or_create(&ReasonLabels {
                    route: route.into(),
                    reason: "shaping",
                })
                .clone(),
        })
    }

    pub fn is_active(&self) -> bool {
        self.route.is_some() || !self.tools.is_empty()
    }

    /// Takes `calls` from the route's budget for a request about to be sent upstream.
    pub fn admit_route(&self, calls: u32) -> Result<(), ProxyError> {
        let Some(rate) = &self.route else {
            return Ok(());
        };
        if calls > rate.burst() {
            return Err(ProxyError::InvalidRequest(format!(
                "a batch of {calls} calls is more than this route sends to the gateway at once (shaping.burst = {})",
                rate.burst()
            )));
        }
        rate.try_acquire_n(calls).map_err(|wait| {
            self.answered.inc();
            shaped(wait, "route")
        })
    }

    /// Takes one call of `tool` from the budget of every entry that matches it.
    pub fn admit_tool(&self, tool: &str) -> Result<(), ProxyError> {
        for (glob, rate) in &self.tools {
            if glob.matches(tool) {
                if let Err(wait) = rate.try_acquire() {
                    self.answered.inc();
                    return Err(shaped(wait, glob.as_str()));
                }
            }
        }
        Ok(())
    }
}

fn shaped(retry_after: Duration, budget: &str) -> ProxyError {
    ProxyError::Shaped {
        retry_after,
        budget: budget.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn tool_budgets_match_by_glob_and_the_route_budget_counts_calls() {
        let config = ShapingConfig {
            requests_per_second: 2.0,
            burst: Some(2),
            tools: BTreeMap::from([("*search".to_string(), "2/min".to_string())]),
        };
        let s = Shaping::new("shaping-unit", &config).unwrap();
        s.admit_tool("x_amz_bedrock_agentcore_search").unwrap();
        s.admit_tool("Other___search").unwrap();
        let err = s.admit_tool("x_amz_bedrock_agentcore_search").unwrap_err();
        assert_eq!(err.rpc_code(), -32003);
        assert_eq!(err.kind(), "shaped");
        assert!(matches!(err, ProxyError::Shaped { retry_after, ref budget }
            if retry_after == Duration::from_secs(30) && budget == "*search"));
        s.admit_tool("Demo___echo").unwrap();
        s.admit_route(2).unwrap();
        assert!(matches!(s.admit_route(1), Err(ProxyError::Shaped { .. })));
        assert!(matches!(
            s.admit_route(3),
            Err(ProxyError::InvalidRequest(_))
        ));
    }
}
