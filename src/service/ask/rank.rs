//! The hybrid ranking rule: reciprocal rank fusion. Each kind of evidence ranks the candidates on its
//! own (meaning: cosine with the embedded text or the example film; title words; the people the
//! request boosts; popularity: votes), and a movie's score is the sum over the lists it is in of
//! `weight / (K + rank)`, rank from 1, [`K`] = 60 (the constant of Cormack, Clarke and Büttcher 2009).
//! Ties go to the lower row. A list's weight says how much its evidence counts (see `super::WEIGHTS`).

/// The rank offset of reciprocal rank fusion.
pub const K: f32 = 60.0;

/// One ranked list (best first) and its weight.
pub struct Ranked<'a> {
    pub rows: &'a [usize],
    pub weight: f32,
}

/// The `k` best rows of the fused lists, best first, with their fused scores.
pub fn fuse(lists: &[Ranked], k: usize) -> Vec<(usize, f32)> {
    let mut scores: std::collections::HashMap<usize, f32> = std::collections::HashMap::new();
    for list in lists {
        for (rank, &row) in list.rows.iter().enumerate() {
            *scores.entry(row).or_default() += list.weight / (K + rank as f32 + 1.0);
        }
    }
    let mut fused: Vec<(usize, f32)> = scores.into_iter().collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    fused.truncate(k);
    fused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_scores_follow_the_rule() {
        let (a, b) = ([1usize, 2, 3], [3usize, 4]);
        let fused = fuse(&[Ranked { rows: &a, weight: 1.0 }, Ranked { rows: &b, weight: 0.5 }], 10);
        // Row 3: 1/(60+3) + 0.5/(60+1); row 1: 1/61; row 2: 1/62; row 4: 0.5/62.
        let expect = [(3, 1.0 / 63.0 + 0.5 / 61.0), (1, 1.0 / 61.0), (2, 1.0 / 62.0), (4, 0.5 / 62.0)];
        assert_eq!(fused.len(), 4);
        for ((row, score), (er, es)) in fused.iter().zip(expect) {
            assert_eq!(*row, er);
            assert!((score - es).abs() < 1e-7, "{row}: {score} vs {es}");
        }
        assert_eq!(fuse(&[Ranked { rows: &a, weight: 1.0 }], 2).len(), 2, "cut to k");
    }

    #[test]
    fn evidence_in_two_lists_beats_the_top_of_one() {
        // Second in both lists beats first in one: 2/62 > 1/61.
        let (a, b) = ([10usize, 20], [30usize, 20]);
        let fused = fuse(&[Ranked { rows: &a, weight: 1.0 }, Ranked { rows: &b, weight: 1.0 }], 3);
        assert_eq!(fused[0].0, 20);
        assert_eq!((fused[1].0, fused[2].0), (10, 30), "equal scores: the lower row first");
    }
}
