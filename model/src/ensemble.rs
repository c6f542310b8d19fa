//! LightGBM's text model format, read and evaluated natively.
//!
//! `lightgbm3` trains with early stopping but neither reports the best iteration nor saves a
//! model cut to it; its only rollback happens when patience runs out. So the trainer reads the
//! saved model's trees, scores the validation rows after every iteration in one pass (cheap:
//! each tree is visited once per row), picks the best iteration, and cuts the model text to it.
//! The scorer evaluates the same trees for every request: an [`Ensemble`] is plain data, `Send`
//! and `Sync`, so every worker shares one without locks. Every use is checked against
//! LightGBM's own predictions, so a misread model fails loudly.

use crate::{ModelError, Result};

/// LightGBM's `kZeroThreshold`: values this close to zero count as zero for missing-value rules.
const ZERO_THRESHOLD: f64 = 1e-35;

/// `decision_type` bits (LightGBM's `kCategoricalMask`, `kDefaultLeftMask`, missing type << 2).
const CATEGORICAL: u8 = 1;
const DEFAULT_LEFT: u8 = 2;
const MISSING_ZERO: u8 = 1;
const MISSING_NAN: u8 = 2;

/// The trees of a binary LightGBM model, in training order.
///
/// Nodes of all trees live in one array (and leaf values in another), so a prediction walks
/// contiguous memory instead of chasing one allocation per tree.
#[derive(Debug, Clone)]
pub struct Ensemble {
    nodes: Vec<Node>,
    leaves: Vec<f64>,
    trees: Vec<TreeRef>,
    features: usize,
    feature_names: Vec<String>,
    sigmoid: f64,
    average_output: bool,
}

/// One split. Children are tree-local: `>= 0` an inner node, `< 0` the leaf `!child`.
#[derive(Debug, Clone, Copy)]
struct Node {
    threshold: f64,
    feature: u32,
    missing: u8,
    default_left: bool,
    left: i32,
    right: i32,
}

/// Where one tree's nodes and leaves start; a tree without nodes is a single leaf.
#[derive(Debug, Clone, Copy)]
struct TreeRef {
    node_start: usize,
    inner: usize,
    leaf_start: usize,
}

fn model_error(reason: impl Into<String>) -> ModelError {
    ModelError::Text {
        reason: reason.into(),
    }
}

fn numbers<T: std::str::FromStr>(key: &str, value: &str) -> Result<Vec<T>> {
    value
        .split_whitespace()
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| model_error(format!("{key} holds {v:?}, not a number")))
        })
        .collect()
}

/// One tree as its text block lists it, before it joins the ensemble's arrays.
struct ParsedTree {
    nodes: Vec<Node>,
    leaf_value: Vec<f64>,
}

fn parse_tree(index: usize, lines: &[(&str, &str)], features: usize) -> Result<ParsedTree> {
    let get = |key: &str| {
        lines
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| model_error(format!("tree {index} has no {key}")))
    };
    let leaves: usize = get("num_leaves")?
        .trim()
        .parse()
        .map_err(|_| model_error(format!("tree {index}: num_leaves is not a number")))?;
    if get("num_cat").unwrap_or("0").trim() != "0" {
        return Err(model_error(format!(
            "tree {index} has categorical splits, which the trainer never asks for"
        )));
    }
    if get("is_linear").unwrap_or("0").trim() != "0" {
        return Err(model_error(format!("tree {index} is a linear tree")));
    }
    let leaf_value: Vec<f64> = numbers("leaf_value", get("leaf_value")?)?;
    if leaves == 0 || leaf_value.len() != leaves {
        return Err(model_error(format!(
            "tree {index} has {leaves} leaves but {} leaf values",
            leaf_value.len()
        )));
    }
    if leaves == 1 {
        return Ok(ParsedTree {
            nodes: Vec::new(),
            leaf_value,
        });
    }
    let split_feature: Vec<usize> = numbers("split_feature", get("split_feature")?)?;
    let threshold: Vec<f64> = numbers("threshold", get("threshold")?)?;
    let decision_type: Vec<u8> = numbers("decision_type", get("decision_type")?)?;
    let left_child: Vec<i32> = numbers("left_child", get("left_child")?)?;
    let right_child: Vec<i32> = numbers("right_child", get("right_child")?)?;
    let inner = leaves - 1;
    let child_ok = |c: i32| {
        if c >= 0 {
            (c as usize) < inner
        } else {
            ((!c) as usize) < leaves
        }
    };
    let consistent = split_feature.len() == inner
        && threshold.len() == inner
        && decision_type.len() == inner
        && left_child.len() == inner
        && right_child.len() == inner
        && split_feature.iter().all(|f| *f < features)
        && decision_type.iter().all(|d| d & CATEGORICAL == 0)
        && left_child.iter().chain(&right_child).all(|c| child_ok(*c));
    if !consistent {
        return Err(model_error(format!(
            "tree {index}'s node arrays do not describe a numeric tree of {leaves} leaves"
        )));
    }
    let nodes = (0..inner)
        .map(|i| Node {
            threshold: threshold[i],
            // split_feature < features, which came from a usize parsed out of the text
            feature: u32::try_from(split_feature[i]).unwrap_or(u32::MAX),
            missing: (decision_type[i] >> 2) & 3,
            default_left: decision_type[i] & DEFAULT_LEFT != 0,
            left: left_child[i],
            right: right_child[i],
        })
        .collect();
    Ok(ParsedTree { nodes, leaf_value })
}

impl Ensemble {
    /// Reads a binary model saved by LightGBM (`Booster::save_string`).
    pub fn parse(text: &str) -> Result<Ensemble> {
        let mut header: Vec<(&str, &str)> = Vec::new();
        let mut blocks: Vec<Vec<(&str, &str)>> = Vec::new();
        for line in text.lines() {
            if line.starts_with("end of trees") {
                break;
            }
            if line.starts_with("Tree=") {
                blocks.push(Vec::new());
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            match blocks.last_mut() {
                Some(block) => block.push((key, value)),
                None => header.push((key, value)),
            }
        }
        let get = |key: &str| header.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        if get("num_tree_per_iteration").unwrap_or("1") != "1"
            || get("num_class").unwrap_or("1") != "1"
        {
            return Err(model_error("not a binary model (one tree per iteration)"));
        }
        let objective = get("objective").unwrap_or_default();
        let mut words = objective.split_whitespace();
        if words.next() != Some("binary") {
            return Err(model_error(format!(
                "objective is {objective:?}, not binary"
            )));
        }
        let sigmoid = match words.find_map(|w| w.strip_prefix("sigmoid:")) {
            Some(s) => s
                .parse::<f64>()
                .map_err(|_| model_error(format!("objective {objective:?} has a bad sigmoid")))?,
            None => 1.0,
        };
        let features = get("max_feature_idx")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or_else(|| model_error("no max_feature_idx"))?
            + 1;
        let average_output = header.iter().any(|(k, _)| *k == "average_output")
            || text.lines().any(|l| l == "average_output");
        let feature_names: Vec<String> = get("feature_names")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if feature_names.len() != features {
            return Err(model_error(format!(
                "{} feature names for {features} features",
                feature_names.len()
            )));
        }
        let mut ensemble = Ensemble {
            nodes: Vec::new(),
            leaves: Vec::new(),
            trees: Vec::with_capacity(blocks.len()),
            features,
            feature_names,
            sigmoid,
            average_output,
        };
        for (i, block) in blocks.iter().enumerate() {
            let tree = parse_tree(i, block, features)?;
            ensemble.trees.push(TreeRef {
                node_start: ensemble.nodes.len(),
                inner: tree.nodes.len(),
                leaf_start: ensemble.leaves.len(),
            });
            ensemble.nodes.extend(tree.nodes);
            ensemble.leaves.extend(tree.leaf_value);
        }
        if ensemble.trees.is_empty() {
            return Err(model_error("the model has no trees"));
        }
        let declared = tree_layout(text)?.sizes.len();
        if declared != ensemble.trees.len() {
            return Err(model_error(format!(
                "tree_sizes declares {declared} trees, the text holds {}",
                ensemble.trees.len()
            )));
        }
        Ok(ensemble)
    }

    /// Number of trees, which for a binary model is the number of iterations.
    pub fn iterations(&self) -> usize {
        self.trees.len()
    }

    pub fn features(&self) -> usize {
        self.features
    }

    /// The names the model was trained with, in column order.
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// The leaf value `row` lands in, following LightGBM's `NumericalDecision`.
    fn tree_output(&self, tree: &TreeRef, row: &[f64]) -> f64 {
        if tree.inner == 0 {
            return self.leaves[tree.leaf_start];
        }
        let nodes = &self.nodes[tree.node_start..tree.node_start + tree.inner];
        let mut node = 0usize;
        // a valid tree reaches a leaf in at most `inner` steps; parse() checked the indices
        for _ in 0..nodes.len() {
            let split = &nodes[node];
            // a row shorter than the model reads its absent columns as missing
            let mut value = row.get(split.feature as usize).copied().unwrap_or(f64::NAN);
            // LightGBM's dense input drops |v| <= kZeroThreshold as sparse zeros before a tree sees it
            if value.abs() <= ZERO_THRESHOLD {
                value = 0.0;
            }
            if value.is_nan() && split.missing != MISSING_NAN {
                value = 0.0;
            }
            let default_side = (split.missing == MISSING_ZERO && value.abs() <= ZERO_THRESHOLD)
                || (split.missing == MISSING_NAN && value.is_nan());
            let go_left = if default_side {
                split.default_left
            } else {
                value <= split.threshold
            };
            let next = if go_left { split.left } else { split.right };
            if next < 0 {
                return self.leaves[tree.leaf_start + (!next) as usize];
            }
            node = next as usize;
        }
        f64::NAN
    }

    /// The model's raw score (log-odds before the sigmoid) for one row in feature order.
    /// Trees are summed in training order, as LightGBM does, so results match it bit for bit
    /// up to the last rounding of `exp`.
    pub fn raw_score(&self, row: &[f64]) -> f64 {
        let mut raw = 0.0;
        for tree in &self.trees {
            raw += self.tree_output(tree, row);
        }
        if self.average_output {
            raw / self.trees.len() as f64
        } else {
            raw
        }
    }

    /// The probability of the positive class (for the bid-filtering model: the likelihood to
    /// bid) for one row in feature order, as `Booster::predict` computes it.
    pub fn predict(&self, row: &[f64]) -> f64 {
        1.0 / (1.0 + (-self.sigmoid * self.raw_score(row)).exp())
    }

    /// Calls `visit(iteration, probabilities)` after each iteration (1-based) with the
    /// probabilities the model cut to that iteration gives the rows of `x` (row-major).
    pub fn staged_probabilities(&self, x: &[f64], mut visit: impl FnMut(usize, &[f64])) {
        let rows = x.len() / self.features.max(1);
        let mut raw = vec![0.0; rows];
        let mut probabilities = vec![0.0; rows];
        for (i, tree) in self.trees.iter().enumerate() {
            let divisor = if self.average_output {
                (i + 1) as f64
            } else {
                1.0
            };
            for (r, row) in x.chunks_exact(self.features).enumerate() {
                raw[r] += self.tree_output(tree, row);
                probabilities[r] = 1.0 / (1.0 + (-self.sigmoid * raw[r] / divisor).exp());
            }
            visit(i + 1, &probabilities);
        }
    }
}

/// Where the trees sit in a model text: the `tree_sizes=` line (its span and the sizes) and
/// the text from `Tree=0` to `end of trees`, which the sizes must cover exactly.
struct TreeLayout {
    sizes_line: std::ops::Range<usize>,
    sizes: Vec<usize>,
    trees: std::ops::Range<usize>,
}

/// Checks that the text holds every tree it declares: LightGBM writes each tree's length in
/// bytes (`tree_sizes=`) and ends the trees with `end of trees`, so a cut or spliced file shows.
fn tree_layout(text: &str) -> Result<TreeLayout> {
    let sizes_start = text
        .find("\ntree_sizes=")
        .map(|i| i + 1)
        .ok_or_else(|| model_error("no tree_sizes line"))?;
    let sizes_end = text[sizes_start..]
        .find('\n')
        .map(|i| sizes_start + i)
        .ok_or_else(|| model_error("tree_sizes line does not end"))?;
    let sizes: Vec<usize> = numbers(
        "tree_sizes",
        &text[sizes_start + "tree_sizes=".len()..sizes_end],
    )?;
    let trees_start = text
        .find("\nTree=0\n")
        .map(|i| i + 1)
        .ok_or_else(|| model_error("no Tree=0"))?;
    let trees_end = trees_start + sizes.iter().sum::<usize>();
    if !text
        .get(trees_end..)
        .is_some_and(|t| t.starts_with("end of trees"))
    {
        return Err(model_error(format!(
            "the {} trees tree_sizes declares do not end at `end of trees` (is the file cut short?)",
            sizes.len()
        )));
    }
    Ok(TreeLayout {
        sizes_line: sizes_start..sizes_end,
        sizes,
        trees: trees_start..trees_end,
    })
}

/// The model text cut to its first `iterations` trees, everything else kept. LightGBM records
/// each tree's length in bytes (`tree_sizes=`), which makes the cut exact.
pub fn truncate(text: &str, iterations: usize) -> Result<String> {
    let TreeLayout {
        sizes_line,
        sizes,
        trees,
    } = tree_layout(text)?;
    if iterations == 0 || iterations > sizes.len() {
        return Err(model_error(format!(
            "cannot keep {iterations} of {} trees",
            sizes.len()
        )));
    }
    let kept_end = trees.start + sizes[..iterations].iter().sum::<usize>();
    let kept_sizes: Vec<String> = sizes[..iterations].iter().map(usize::to_string).collect();
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..sizes_line.start]);
    out.push_str("tree_sizes=");
    out.push_str(&kept_sizes.join(" "));
    out.push_str(&text[sizes_line.end..trees.start]);
    out.push_str(&text[trees.start..kept_end]);
    out.push_str(&text[trees.end..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightgbm3::{Booster, Dataset};

    /// Noisy rows whose win odds grow with feature 0 and fall with feature 2.
    fn rows(n: usize, seed: u64) -> (Vec<f64>, Vec<f32>) {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let a = (next() * 10.0).floor();
            let b = next();
            let c = (next() * 4.0).floor();
            let logit = 0.6 * a - 1.5 * c - 2.0;
            let p = 1.0 / (1.0 + (-logit).exp());
            x.extend([a, b, c]);
            y.push(if next() < p { 1.0 } else { 0.0 });
        }
        (x, y)
    }

    fn trained(iterations: usize) -> Booster {
        let (x, y) = rows(3000, 1);
        let params = serde_json::json!({
            "objective": "binary", "num_iterations": iterations, "num_threads": 1,
            "verbosity": -1, "deterministic": true, "learning_rate": 0.3, "num_leaves": 8
        });
        let dataset = Dataset::from_slice(&x, &y, 3, true).expect("dataset");
        Booster::train(dataset, &params).expect("trains")
    }

    #[test]
    fn own_evaluation_matches_lightgbm_at_every_iteration() {
        let mut booster = trained(12);
        let text = booster.save_string().expect("saves");
        let ensemble = Ensemble::parse(&text).expect("parses");
        assert_eq!((ensemble.iterations(), ensemble.features()), (12, 3));
        let (x, _) = rows(500, 2);
        let mut staged: Vec<Vec<f64>> = Vec::new();
        ensemble.staged_probabilities(&x, |_, p| staged.push(p.to_vec()));
        for k in [1, 5, 12] {
            booster.set_max_iterations(k as i32).expect("limit");
            let theirs = booster.predict(&x, 3, true).expect("predicts");
            let worst = theirs
                .iter()
                .zip(&staged[k - 1])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(worst < 1e-12, "iteration {k}: {worst}");
        }
        let single: Vec<f64> = x.chunks_exact(3).map(|r| ensemble.predict(r)).collect();
        assert_eq!(
            single, staged[11],
            "one row at a time equals the staged pass"
        );
    }

    #[test]
    fn a_cut_model_is_the_first_trees_of_the_whole() {
        let booster = trained(10);
        let text = booster.save_string().expect("saves");
        let cut = truncate(&text, 4).expect("cuts");
        let reloaded = Booster::from_string(&cut).expect("lightgbm loads the cut model");
        assert_eq!(reloaded.num_iterations(), 4);
        let (x, _) = rows(200, 3);
        let mut at_four = Vec::new();
        Ensemble::parse(&text)
            .expect("parses")
            .staged_probabilities(&x, |k, p| {
                if k == 4 {
                    at_four = p.to_vec();
                }
            });
        let theirs = reloaded.predict(&x, 3, true).expect("predicts");
        let worst = theirs
            .iter()
            .zip(&at_four)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-12, "{worst}");
        assert_eq!(truncate(&text, 10).expect("keeps all"), text);
        assert!(truncate(&text, 11).is_err());
        assert!(truncate("tree\nversion=v4\n", 1).is_err());
    }

    #[test]
    fn malformed_models_are_refused() {
        assert!(Ensemble::parse("tree\nobjective=regression\nmax_feature_idx=1\n").is_err());
        let model = |tree: &str| {
            format!(
                "tree\nobjective=binary sigmoid:1\nmax_feature_idx=0\nfeature_names=a\ntree_sizes={}\n\n{tree}end of trees\n",
                tree.len()
            )
        };
        let tree = "Tree=0\nnum_leaves=2\nnum_cat=0\nsplit_feature=0\nthreshold=0.5\n\
                    decision_type=2\nleft_child=-1\nright_child=-2\nleaf_value=1 2\n\n\n";
        assert!(Ensemble::parse(&model(&tree.replace("right_child=-2", "right_child=5"))).is_err());
        let good = model(tree);
        // cut short, or with the end marker gone, or declaring a tree it lacks: refused
        assert!(Ensemble::parse(&good[..good.len() - 20]).is_err());
        assert!(Ensemble::parse(&good.replace("end of trees", "")).is_err());
        assert!(
            Ensemble::parse(&good.replace(
                &format!("tree_sizes={}", tree.len()),
                &format!("tree_sizes={} 40", tree.len())
            ))
            .is_err()
        );
        let ensemble = Ensemble::parse(&good).expect("parses");
        let mut seen = Vec::new();
        ensemble.staged_probabilities(&[0.2, 0.9], |_, p| seen = p.to_vec());
        let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
        assert_eq!(seen, vec![sigmoid(1.0), sigmoid(2.0)]);
        assert_eq!(ensemble.predict(&[0.2]), sigmoid(1.0));
        // a short row reads as missing (NaN -> 0 for a split without a missing rule), not a panic
        assert_eq!(ensemble.predict(&[]), sigmoid(1.0));
        let no_trees = "tree\nobjective=binary sigmoid:1\nmax_feature_idx=0\nfeature_names=a\n";
        assert!(Ensemble::parse(no_trees).is_err());
    }

    #[test]
    fn an_ensemble_is_shared_by_threads() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Ensemble>();
    }
}
