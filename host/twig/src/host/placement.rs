//! Whether a component runs on this host, and with how many instances,
//! following wadm's scalers: no scaler means wadm would not run it; a
//! spread whose requirements do not match this host's labels gets no
//! instances here; the board caps instances per component and components
//! per host.
//!
//! A pure function of its inputs, so that the rules are tested here
//! without a host.

use std::collections::BTreeMap;

use twig_manifest::{ComponentKind, ComponentSpec, Scaler};

use crate::board::Board;

/// What placement looks at besides the component itself.
pub struct Here<'a> {
    pub board: &'a Board,
    pub labels: &'a BTreeMap<String, String>,
    /// Components running on this host now.
    pub running: usize,
}

/// The number of instances `spec` of app `app` gets here, or why none.
pub fn place(app: &str, spec: &ComponentSpec, here: &Here<'_>) -> Result<usize, String> {
    let Some(scaler) = &spec.scaler else {
        if spec.kind == ComponentKind::Capability {
            // wadm gives a provider without a scaler one instance.
            return Ok(1);
        }
        return Err("no spreadscaler or daemonscaler trait, so no instances are asked for".into());
    };
    let total = scaler.instances() as usize;
    if total == 0 {
        return Err("the scaler asks for 0 instances".into());
    }
    let spread = scaler.spread();
    let instances = if spread.is_empty() {
        total
    } else {
        let weight = |s: &twig_manifest::Spread| s.weight.unwrap_or(100) as usize;
        let total_weight: usize = spread.iter().map(weight).sum::<usize>().max(1);
        let mut n = 0;
        let mut unmatched = Vec::new();
        for s in spread {
            let missing: Vec<String> = s
                .requirements
                .iter()
                .filter(|(k, v)| here.labels.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            if missing.is_empty() {
                n += match scaler {
                    Scaler::Daemon { .. } => total,
                    Scaler::Spread { .. } => (total * weight(s)).div_ceil(total_weight),
                };
            } else {
                unmatched.push(format!("spread `{}` needs {}", s.name, missing.join(", ")));
            }
        }
        if n == 0 {
            return Err(format!(
                "this host's labels do not meet any spread requirement ({}); host labels: {}",
                unmatched.join("; "),
                here.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        n.min(total)
    };
    let board = here.board;
    let max = board.limits.max_instances;
    if instances > max {
        tracing::warn!(
            app = %app, component = %spec.name,
            "asks for {instances} instances; board `{}` allows {max}", board.name
        );
    }
    if here.running >= board.limits.max_components {
        return Err(format!(
            "board `{}` allows {} components and that many are running",
            board.name, board.limits.max_components
        ));
    }
    Ok(instances.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use twig_manifest::{Image, Spread};

    fn spec(scaler: Option<Scaler>) -> ComponentSpec {
        ComponentSpec {
            name: "c".into(),
            kind: ComponentKind::Component,
            id: "app-c".into(),
            image: Image::File("c.wasm".into()),
            config: Vec::new(),
            scaler,
            links: Vec::new(),
            secrets: Vec::new(),
        }
    }

    fn spread(name: &str, req: &[(&str, &str)], weight: Option<u32>) -> Spread {
        Spread {
            name: name.into(),
            requirements: req
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            weight,
        }
    }

    #[test]
    fn scalers_and_spreads_decide_the_count() {
        let board = Board::sim();
        let labels = BTreeMap::from([("zone".to_string(), "a".to_string())]);
        let here = Here {
            board: &board,
            labels: &labels,
            running: 0,
        };
        let e = place("app", &spec(None), &here).unwrap_err();
        assert!(e.contains("no spreadscaler"), "{e}");
        let plain = Scaler::Spread {
            instances: 3,
            spread: Vec::new(),
        };
        assert_eq!(place("app", &spec(Some(plain)), &here), Ok(3));
        // Half the weight matches here: half the instances, rounded up.
        let split = Scaler::Spread {
            instances: 3,
            spread: vec![
                spread("a", &[("zone", "a")], Some(50)),
                spread("b", &[("zone", "b")], Some(50)),
            ],
        };
        assert_eq!(place("app", &spec(Some(split)), &here), Ok(2));
        let elsewhere = Scaler::Daemon {
            instances: 1,
            spread: vec![spread("b", &[("zone", "b")], None)],
        };
        let e = place("app", &spec(Some(elsewhere)), &here).unwrap_err();
        assert!(e.contains("zone=b") && e.contains("zone=a"), "{e}");
    }

    #[test]
    fn the_board_caps_instances_and_components() {
        let board = Board::sim();
        let labels = BTreeMap::new();
        let many = Scaler::Spread {
            instances: 10_000,
            spread: Vec::new(),
        };
        let here = Here {
            board: &board,
            labels: &labels,
            running: 0,
        };
        assert_eq!(
            place("app", &spec(Some(many.clone())), &here),
            Ok(board.limits.max_instances)
        );
        let full = Here {
            running: board.limits.max_components,
            ..here
        };
        let e = place("app", &spec(Some(many)), &full).unwrap_err();
        assert!(e.contains("allows"), "{e}");
    }
}
