//! Address ranges (CIDRs) as the file and the flags write them, read with errors that say
//! what is wrong ("the prefix length 33 is more than 32"), where the parser of `ipnet`
//! says only "invalid IP address syntax".
//!
//! In the file, the ranges are checked before the typed reading of the TOML: a bad one is
//! reported on its key (`inbound.allowed_clients[1]`) together with every other problem
//! of the file, instead of stopping the reading at the first.

use std::net::IpAddr;

use ipnet::IpNet;

/// `10.0.0.0/16`, `fd00::/8`: an address, a slash and a prefix length.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let Some((address, length)) = text.split_once('/') else {
        return Err(match text.parse::<IpAddr>() {
            Ok(ip) => format!(
                "{text:?} has no prefix length; write \"{ip}/{}\" for this one address",
                max_length(ip)
            ),
            Err(_) => format!("{text:?} is not an address range like \"10.0.0.0/16\""),
        });
    };
    let ip: IpAddr = address
        .parse()
        .map_err(|_| format!("{text:?}: {address:?} is not an IPv4 or IPv6 address"))?;
    let max = max_length(ip);
    let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    let length: u8 = Some(length)
        .filter(|l| !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| {
            format!("{text:?}: the prefix length {length:?} is not a number from 0 to {max}")
        })?;
    if length > max {
        return Err(format!(
            "{text:?}: the prefix length {length} is more than {max}, the longest an {family} \
             prefix can be"
        ));
    }
    IpNet::new(ip, length).map_err(|e| format!("{text:?}: {e}"))
}

fn max_length(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// Checks every range at the keys that hold ranges (`inbound.allowed_clients`,
/// `dns.private_ranges`, `route[i].preferred_ranges`), removes the bad ones from the raw
/// table and returns them as `(key, problem)`. Values that are not strings are left for
/// the typed reading to refuse.
pub(crate) fn take_bad_ranges(table: &mut toml::Table) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for (section, key) in [("inbound", "allowed_clients"), ("dns", "private_ranges")] {
        if let Some(toml::Value::Table(section_table)) = table.get_mut(section) {
            take_from(
                section_table,
                key,
                &format!("{section}.{key}"),
                &mut problems,
            );
        }
    }
    if let Some(toml::Value::Array(routes)) = table.get_mut("route") {
        for (i, route) in routes.iter_mut().enumerate() {
            if let toml::Value::Table(route) = route {
                take_from(
                    route,
                    "preferred_ranges",
                    &format!("route[{i}].preferred_ranges"),
                    &mut problems,
                );
            }
        }
    }
    problems
}

fn take_from(
    table: &mut toml::Table,
    key: &str,
    full_key: &str,
    problems: &mut Vec<(String, String)>,
) {
    let Some(toml::Value::Array(ranges)) = table.get_mut(key) else {
        return;
    };
    let mut index = 0;
    ranges.retain(|value| {
        let keep = match value.as_str().map(parse_cidr) {
            Some(Err(problem)) => {
                problems.push((format!("{full_key}[{index}]"), problem));
                false
            }
            _ => true,
        };
        index += 1;
        keep
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_errors_say_what_is_wrong() {
        assert_eq!(
            parse_cidr("10.0.0.0/16").unwrap(),
            "10.0.0.0/16".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            parse_cidr("fd00::/8").unwrap(),
            "fd00::/8".parse::<IpNet>().unwrap()
        );
        for (bad, expected) in [
            (
                "10.0.0.0/33",
                "\"10.0.0.0/33\": the prefix length 33 is more than 32, the longest an IPv4 prefix can be",
            ),
            (
                "fd00::/129",
                "\"fd00::/129\": the prefix length 129 is more than 128, the longest an IPv6 prefix can be",
            ),
            (
                "10.0.0.0/x",
                "\"10.0.0.0/x\": the prefix length \"x\" is not a number from 0 to 32",
            ),
            (
                "10.0.0.0/",
                "\"10.0.0.0/\": the prefix length \"\" is not a number from 0 to 32",
            ),
            (
                "10.0.0/8",
                "\"10.0.0/8\": \"10.0.0\" is not an IPv4 or IPv6 address",
            ),
            (
                "10.0.0.1",
                "\"10.0.0.1\" has no prefix length; write \"10.0.0.1/32\" for this one address",
            ),
            (
                "vpc",
                "\"vpc\" is not an address range like \"10.0.0.0/16\"",
            ),
        ] {
            assert_eq!(parse_cidr(bad).unwrap_err(), expected, "{bad}");
        }
    }

    #[test]
    fn bad_ranges_are_taken_out_with_their_keys() {
        let mut table: toml::Table = toml::from_str(
            "[inbound]\nallowed_clients = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n\
             [dns]\nprivate_ranges = [\"x\"]\n\
             [[route]]\npreferred_ranges = [\"10.1.0.0/24\"]\n\
             [[route]]\npreferred_ranges = [\"1.2.3.4\", 7]\n",
        )
        .unwrap();
        let problems = take_bad_ranges(&mut table);
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "inbound.allowed_clients[1]",
                "dns.private_ranges[0]",
                "route[1].preferred_ranges[0]"
            ]
        );
        assert_eq!(
            table["inbound"]["allowed_clients"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        // A value of the wrong type stays, for the typed reading to refuse.
        assert_eq!(
            table["route"][1]["preferred_ranges"].as_array().unwrap(),
            &vec![toml::Value::Integer(7)]
        );
    }
}
