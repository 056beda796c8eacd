//! Deployment tiers: `tier-1-local` … `tier-5-enterprise`, with their aliases.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    Local,
    Desktop,
    Mobile,
    Saas,
    Enterprise,
}

impl Tier {
    pub const ALL: [Tier; 5] = [
        Tier::Local,
        Tier::Desktop,
        Tier::Mobile,
        Tier::Saas,
        Tier::Enterprise,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Tier::Local => "tier-1-local",
            Tier::Desktop => "tier-2-desktop",
            Tier::Mobile => "tier-3-mobile",
            Tier::Saas => "tier-4-saas",
            Tier::Enterprise => "tier-5-enterprise",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl Serialize for Tier {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.id())
    }
}

/// A tier is written as its id (`tier-2-desktop`).
impl schemars::JsonSchema for Tier {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Tier".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let ids: Vec<&str> = Tier::ALL.iter().map(|tier| tier.id()).collect();
        schemars::json_schema!({"type": "string", "enum": ids})
    }
}

impl FromStr for Tier {
    type Err = String;

    /// Accepts the ids, `1`…`5`, `tier-2`, and the short names local, desktop, mobile,
    /// saas (also server, cloud) and enterprise ([`Tier::spellings`]), in any case.
    fn from_str(text: &str) -> Result<Tier, String> {
        let lower = text.trim().to_ascii_lowercase();
        SPELLINGS
            .iter()
            .find(|(spellings, _)| spellings.contains(&lower.as_str()))
            .map(|(_, tier)| *tier)
            .ok_or_else(|| {
                format!(
                    "unknown tier `{text}`; tiers are tier-1-local, tier-2-desktop, tier-3-mobile, tier-4-saas, tier-5-enterprise (or 1-5, local, desktop, mobile, saas, enterprise)"
                )
            })
    }
}

/// Every way to write each tier.
const SPELLINGS: [(&[&str], Tier); 5] = [
    (
        &["tier-1-local", "1", "tier-1", "tier1", "local"],
        Tier::Local,
    ),
    (
        &["tier-2-desktop", "2", "tier-2", "tier2", "desktop"],
        Tier::Desktop,
    ),
    (
        &["tier-3-mobile", "3", "tier-3", "tier3", "mobile"],
        Tier::Mobile,
    ),
    (
        &[
            "tier-4-saas",
            "4",
            "tier-4",
            "tier4",
            "saas",
            "server",
            "cloud",
        ],
        Tier::Saas,
    ),
    (
        &["tier-5-enterprise", "5", "tier-5", "tier5", "enterprise"],
        Tier::Enterprise,
    ),
];

impl Tier {
    /// Every accepted spelling (in lower case), for documents that list them.
    pub fn spellings() -> Vec<&'static str> {
        SPELLINGS
            .iter()
            .flat_map(|(s, _)| s.iter().copied())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases() {
        for (text, tier) in [
            ("2", Tier::Desktop),
            ("desktop", Tier::Desktop),
            ("tier-2-desktop", Tier::Desktop),
            ("Server", Tier::Saas),
            ("5", Tier::Enterprise),
        ] {
            assert_eq!(text.parse::<Tier>(), Ok(tier), "{text}");
        }
        assert!("tier-9".parse::<Tier>().is_err());
        assert!("6".parse::<Tier>().is_err());
    }
}
