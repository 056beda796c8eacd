//! The built-in resource class table: what xbundle assumes about a resource the repository does
//! not define (`resources/<name>/.vrooli/service.json` absent), and about tiers a definition does
//! not describe.
//!
//! | class | members | RAM MB | disk MB | cores | GPU | network | local | desktop | mobile | saas | enterprise |
//! |---|---|---|---|---|---|---|---|---|---|---|---|
//! | database-heavy | postgres, mysql, mongodb, questdb | 768 | 4096 | 1 | none | offline | 100 | 60 | 20 | 95 | 100 |
//! | database-light | sqlite, qdrant, chroma | 256 | 1024 | 0.5 | none | offline | 100 | 90 | 60 | 90 | 95 |
//! | cache | redis, memcached | 256 | 128 | 0.5 | none | offline | 100 | 90 | 50 | 95 | 100 |
//! | ai-heavy | ollama, comfyui, whisper, audiocraft, deepstack | 4096 | 8192 | 4 | optional | offline | 100 | 60 | 0 | 30 | 80 |
//! | ai-api | openrouter, claude-code, codex, gemini, cline | 64 | 10 | 0.1 | none | required | 100 | 90 | 90 | 100 | 95 |
//! | automation | n8n, node-red, windmill, huginn, airbyte | 512 | 1024 | 1 | none | optional | 100 | 60 | 10 | 90 | 95 |
//! | storage | minio | 512 | 2048 | 1 | none | offline | 100 | 70 | 20 | 95 | 100 |
//! | browser | browserless, playwright, agent-s2 | 2048 | 512 | 2 | none | optional | 100 | 60 | 0 | 80 | 90 |
//! | execution | judge0 | 1024 | 2048 | 2 | none | offline | 100 | 50 | 0 | 85 | 95 |
//! | embedded | in-process, embedded-workflows, local-index | 64 | 64 | 0.1 | none | offline | 100 | 95 | 70 | 90 | 90 |
//! | browser-driver | playwright-driver | 1024 | 400 | 1 | none | offline | 100 | 80 | 0 | 70 | 85 |
//! | scenario-app | (a scenario's own API and UI) | 128 | 100 | 0.25 | none | offline | 100 | 100 | 100 | 100 | 100 |
//! | unknown | anything else | 256 | 256 | 0.5 | none | optional | 100 | 70 | 40 | 80 | 90 |
//!
//! Rationale. Sizes for postgres, redis, minio, browserless and ollama are the original system's
//! own figures (REFERENCE.md); the others are the same order for their kind. Fitness points follow
//! the original analyzer's class defaults (desktop: heavy 60, light 90; mobile: heavy AI 0,
//! databases 20; saas: databases 95, heavy AI 30), extended to every class: a server process that
//! must run beside a desktop app costs memory, setup and a port (60–70), an embedded or in-process
//! replacement costs little (90-95: an in-process cache, embedded workflows, a local index file), a
//! browser driver with its own bundled browser is lighter than a browser server (80), a hosted API needs only a key and a network (90–100), and mobile
//! cannot host servers or large models at all (0–20). Everything runs on a developer's own machine
//! (local: 100). Unknown resources are assumed portable but unproven (70 on desktop), so a
//! definition in `resources/` is always better than the fallback.
//!
//! Swaps the table suggests for resources that declare none: postgres -> sqlite, mysql -> sqlite,
//! redis -> in-process, browserless -> playwright-driver, ollama -> openrouter, n8n ->
//! embedded-workflows, qdrant -> local-index, minio -> s3.

use crate::analysis::tier::Tier;
use crate::service::{Footprint, GpuNeed, NetworkNeed};

pub struct Class {
    pub name: &'static str,
    pub members: &'static [&'static str],
    pub footprint: Footprint,
    /// Points (0..=100) per tier, in `Tier::ALL` order.
    pub fitness: [u32; 5],
}

const fn footprint(
    ram_mb: u64,
    disk_mb: u64,
    cpu_cores: f64,
    gpu: GpuNeed,
    network: NetworkNeed,
) -> Footprint {
    Footprint {
        ram_mb,
        disk_mb,
        cpu_cores,
        gpu,
        network,
    }
}

pub const CLASSES: &[Class] = &[
    Class {
        name: "database-heavy",
        members: &[
            "postgres",
            "postgresql",
            "mysql",
            "mariadb",
            "mongodb",
            "questdb",
        ],
        footprint: footprint(768, 4096, 1.0, GpuNeed::None, NetworkNeed::Offline),
        fitness: [100, 60, 20, 95, 100],
    },
    Class {
        name: "database-light",
        members: &["sqlite", "qdrant", "chroma"],
        footprint: footprint(256, 1024, 0.5, GpuNeed::None, NetworkNeed::Offline),
        fitness: [100, 90, 60, 90, 95],
    },
    Class {
        name: "cache",
        members: &["redis", "memcached"],
        footprint: footprint(256, 128, 0.5, GpuNeed::None, NetworkNeed::Offline),
        fitness: [100, 90, 50, 95, 100],
    },
    Class {
        name: "ai-heavy",
        members: &[
            "ollama",
            "comfyui",
            "whisper",
            "audiocraft",
            "deepstack",
            "unstructured-io",
            "unstructured_io",
        ],
        footprint: footprint(4096, 8192, 4.0, GpuNeed::Optional, NetworkNeed::Offline),
        fitness: [100, 60, 0, 30, 80],
    },
    Class {
        name: "ai-api",
        members: &[
            "openrouter",
            "claude-code",
            "codex",
            "gemini",
            "cline",
            "opencode",
            "cloudflare-ai-gateway",
        ],
        footprint: footprint(64, 10, 0.1, GpuNeed::None, NetworkNeed::Required),
        fitness: [100, 90, 90, 100, 95],
    },
    Class {
        name: "automation",
        members: &[
            "n8n",
            "node-red",
            "windmill",
            "huginn",
            "airbyte",
            "apache-airflow",
        ],
        footprint: footprint(512, 1024, 1.0, GpuNeed::None, NetworkNeed::Optional),
        fitness: [100, 60, 10, 90, 95],
    },
    Class {
        name: "storage",
        members: &["minio", "s3"],
        footprint: footprint(512, 2048, 1.0, GpuNeed::None, NetworkNeed::Offline),
        fitness: [100, 70, 20, 95, 100],
    },
    Class {
        name: "browser",
        members: &["browserless", "playwright", "agent-s2"],
        footprint: footprint(2048, 512, 2.0, GpuNeed::None, NetworkNeed::Optional),
        fitness: [100, 60, 0, 80, 90],
    },
    Class {
        name: "execution",
        members: &["judge0"],
        footprint: footprint(1024, 2048, 2.0, GpuNeed::None, NetworkNeed::Offline),
        fitness: [100, 50, 0, 85, 95],
    },
    Class {
        name: "embedded",
        members: &["in-process", "embedded-workflows", "local-index"],
        footprint: footprint(64, 64, 0.1, GpuNeed::None, NetworkNeed::Offline),
        fitness: [100, 95, 70, 90, 90],
    },
    Class {
        name: "browser-driver",
        members: &["playwright-driver"],
        footprint: footprint(1024, 400, 1.0, GpuNeed::None, NetworkNeed::Offline),
        fitness: [100, 80, 0, 70, 85],
    },
    Class {
        name: "scenario-app",
        members: &[],
        footprint: footprint(128, 100, 0.25, GpuNeed::None, NetworkNeed::Offline),
        fitness: [100, 100, 100, 100, 100],
    },
];

pub const UNKNOWN: Class = Class {
    name: "unknown",
    members: &[],
    footprint: footprint(256, 256, 0.5, GpuNeed::None, NetworkNeed::Optional),
    fitness: [100, 70, 40, 80, 90],
};

/// Built-in swap suggestions for resources that declare none.
pub const SWAPS: &[(&str, &str)] = &[
    ("postgres", "sqlite"),
    ("mysql", "sqlite"),
    ("redis", "in-process"),
    ("browserless", "playwright-driver"),
    ("ollama", "openrouter"),
    ("n8n", "embedded-workflows"),
    ("qdrant", "local-index"),
    ("minio", "s3"),
];

/// The class of a resource by name (`unknown` when the table does not know it).
pub fn class_of(name: &str) -> &'static Class {
    CLASSES
        .iter()
        .find(|class| class.members.contains(&name))
        .unwrap_or(&UNKNOWN)
}

/// A class by its name.
pub fn by_name(name: &str) -> Option<&'static Class> {
    CLASSES
        .iter()
        .chain(std::iter::once(&UNKNOWN))
        .find(|class| class.name == name)
}

pub fn scenario_app() -> &'static Class {
    by_name("scenario-app").expect("the table has scenario-app")
}

impl Class {
    pub fn points(&self, tier: Tier) -> u32 {
        self.fitness[tier.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table in the module docs is the documentation users read: it must match the data.
    #[test]
    fn documented_table_matches_the_data() {
        let source = include_str!("classes.rs");
        let rows: Vec<Vec<String>> = source
            .lines()
            .filter_map(|line| line.strip_prefix("//! | "))
            .skip(1)
            .map(|row| {
                row.trim_end_matches(" |")
                    .split(" | ")
                    .map(str::to_string)
                    .collect()
            })
            .collect();
        let all: Vec<&Class> = CLASSES.iter().chain(std::iter::once(&UNKNOWN)).collect();
        assert_eq!(rows.len(), all.len(), "one documented row per class");
        for (row, class) in rows.iter().zip(all) {
            assert_eq!(row[0], class.name);
            if !class.members.is_empty() {
                for member in row[1].split(", ") {
                    assert!(
                        class.members.contains(&member),
                        "{member} is documented in {} but not a member",
                        class.name
                    );
                }
            }
            let f = class.footprint;
            assert_eq!(
                row[2..7],
                [
                    f.ram_mb.to_string(),
                    f.disk_mb.to_string(),
                    format!("{}", f.cpu_cores),
                    f.gpu.to_string(),
                    f.network.to_string()
                ],
                "{}",
                class.name
            );
            let points: Vec<String> = class.fitness.iter().map(u32::to_string).collect();
            assert_eq!(row[7..12], points[..], "{}", class.name);
        }
    }
}
