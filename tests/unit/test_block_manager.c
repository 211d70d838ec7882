/* KV block accounting: reservations, prefix sharing, commit de-duplication, LRU eviction. */
#include <criterion/criterion.h>
#include <errno.h>

#include "block_manager.h"

#define BS 16

static void fill(int32_t *t, uint32_t n, int32_t base)
{
	for (uint32_t i = 0; i < n; i++)
		t[i] = base + (int32_t)i;
}

Test(block_manager, reserves_and_releases)
{
	struct block_manager *bm;
	struct block_table t;
	struct block_stats st;

	cr_assert_eq(block_manager_new(4, BS, &bm), 0);
	block_table_init(&t);
	cr_expect_eq(block_manager_blocks_needed(bm, &t, 33), 3);
	cr_assert_eq(block_manager_reserve(bm, &t, 33), 0);
	cr_expect_eq(t.n_blocks, 3);
	cr_expect_eq(block_manager_available(bm), 1);
	cr_expect_eq(block_manager_reserve(bm, &t, 48), 0, "33..48 fit in the third block");
	cr_expect_eq(t.n_blocks, 3);
	cr_expect_eq(block_manager_reserve(bm, &t, 80), -ENOSPC);
	cr_expect_eq(t.n_blocks, 3, "a failed reservation changes nothing");
	block_manager_stats(bm, &st);
	cr_expect_eq(st.used, 3);
	cr_expect_eq(st.free, 1);
	block_manager_release(bm, &t);
	cr_expect_eq(block_manager_available(bm), 4);
	cr_expect_eq(t.n_blocks, 0);
	block_table_fini(&t);
	block_manager_free(bm);
	block_manager_free(NULL);
	cr_expect_eq(block_manager_new(0, BS, &bm), -EINVAL);
	cr_expect_eq(block_manager_new(4, 0, &bm), -EINVAL);
}

Test(block_manager, shares_whole_blocks_of_a_common_prefix)
{
	struct block_manager *bm;
	struct block_table a, b;
	int32_t pa[40], pb[45];
	struct block_stats st;

	cr_assert_eq(block_manager_new(8, BS, &bm), 0);
	block_table_init(&a);
	block_table_init(&b);
	fill(pa, 40, 100);
	fill(pb, 45, 100);
	pb[40] = 7; /* same first 40 tokens, then different */

	cr_expect_eq(block_manager_match_prefix(bm, &a, pa, 40, 1), 0, "nothing cached yet");
	cr_assert_eq(block_manager_reserve(bm, &a, 40), 0);
	block_manager_commit(bm, &a, pa, 40, 1);
	cr_expect_eq(a.n_committed, 2, "two full blocks registered, the third is partial");

	/* While a still runs, b shares its two full blocks. */
	cr_expect_eq(block_manager_match_prefix(bm, &b, pb, 45, 1), 32);
	cr_expect_eq(b.blocks[0], a.blocks[0]);
	cr_expect_eq(b.blocks[1], a.blocks[1]);
	cr_expect_eq(block_manager_refcount(bm, a.blocks[0]), 2);
	cr_assert_eq(block_manager_reserve(bm, &b, 45), 0);
	cr_expect_neq(b.blocks[2], a.blocks[2], "partial blocks are never shared");
	block_manager_stats(bm, &st);
	cr_expect_eq(st.prefix_hits, 2);
	cr_expect_eq(st.used, 4);

	/* After both leave, the full blocks stay cached; a different salt does not see them. */
	uint32_t shared0 = a.blocks[0];
	block_manager_release(bm, &a);
	block_manager_release(bm, &b);
	block_manager_stats(bm, &st);
	cr_expect_eq(st.cached, 2);
	cr_expect_eq(st.used, 0);
	cr_expect_eq(block_manager_match_prefix(bm, &a, pa, 40, 2), 0, "other model, other KV");
	cr_expect_eq(block_manager_match_prefix(bm, &b, pa, 40, 1), 32);
	cr_expect_eq(b.blocks[0], shared0);
	block_manager_release(bm, &a);
	block_manager_release(bm, &b);
	block_table_fini(&a);
	block_table_fini(&b);
	block_manager_free(bm);
}

Test(block_manager, always_leaves_the_last_token_to_compute)
{
	struct block_manager *bm;
	struct block_table a, b;
	int32_t p[32];

	cr_assert_eq(block_manager_new(8, BS, &bm), 0);
	block_table_init(&a);
	block_table_init(&b);
	fill(p, 32, 5);
	cr_assert_eq(block_manager_reserve(bm, &a, 32), 0);
	block_manager_commit(bm, &a, p, 32, 0);
	cr_expect_eq(a.n_committed, 2);
	cr_expect_eq(block_manager_match_prefix(bm, &b, p, 32, 0), 16,
	             "an exact repeat still computes its last block");
	block_manager_release(bm, &a);
	block_manager_release(bm, &b);
	block_table_fini(&a);
	block_table_fini(&b);
	block_manager_free(bm);
}

Test(block_manager, commit_deduplicates_blocks_computed_twice)
{
	struct block_manager *bm;
	struct block_table a, b;
	int32_t p[20];

	cr_assert_eq(block_manager_new(8, BS, &bm), 0);
	block_table_init(&a);
	block_table_init(&b);
	fill(p, 20, 9);
	/* Both start before either has committed: each computes its own copy. */
	cr_assert_eq(block_manager_reserve(bm, &a, 20), 0);
	cr_assert_eq(block_manager_reserve(bm, &b, 20), 0);
	cr_expect_eq(block_manager_available(bm), 4);
	block_manager_commit(bm, &a, p, 20, 0);
	block_manager_commit(bm, &b, p, 20, 0);
	cr_expect_eq(b.blocks[0], a.blocks[0], "b switched to a's registered block");
	cr_expect_eq(block_manager_refcount(bm, a.blocks[0]), 2);
	cr_expect_eq(block_manager_available(bm), 5, "b's duplicate went back to the pool");
	block_manager_release(bm, &a);
	block_manager_release(bm, &b);
	cr_expect_eq(block_manager_available(bm), 8);
	block_table_fini(&a);
	block_table_fini(&b);
	block_manager_free(bm);
}

Test(block_manager, evicts_the_least_recently_used_cached_block)
{
	struct block_manager *bm;
	struct block_table t, u;
	int32_t p1[17], p2[17], p3[17];
	struct block_stats st;

	cr_assert_eq(block_manager_new(3, BS, &bm), 0);
	block_table_init(&t);
	block_table_init(&u);
	fill(p1, 17, 1000);
	fill(p2, 17, 2000);
	fill(p3, 17, 3000);
	/* Cache p1's first block, then p2's (p2 more recent). */
	int32_t *ps[] = { p1, p2 };
	for (int k = 0; k < 2; k++) {
		cr_assert_eq(block_manager_reserve(bm, &t, 16), 0);
		block_manager_commit(bm, &t, ps[k], 16, 0);
		block_manager_release(bm, &t);
	}
	block_manager_stats(bm, &st);
	cr_expect_eq(st.cached, 2);
	cr_expect_eq(st.free, 1);
	/* Two fresh blocks: one free, then one evicted: p1's, the older. */
	cr_assert_eq(block_manager_reserve(bm, &u, 32), 0);
	block_manager_stats(bm, &st);
	cr_expect_eq(st.evictions, 1);
	cr_expect_eq(block_manager_match_prefix(bm, &t, p1, 17, 0), 0, "p1 was evicted");
	cr_expect_eq(block_manager_match_prefix(bm, &t, p2, 17, 0), 16, "p2 is still cached");
	cr_expect_eq(block_manager_reserve(bm, &u, 48), -ENOSPC, "p2's block is in use now");
	block_manager_release(bm, &t);
	block_manager_release(bm, &u);
	block_table_fini(&t);
	block_table_fini(&u);
	block_manager_free(bm);
}
