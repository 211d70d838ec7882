/* Framing: encode/decode, size limit, names, SP request ids. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "frame.h"

Test(frame, round_trips_every_field)
{
	inferd_frame f = INFERD_FRAME_INIT;
	Inferd__V1__Frame__MetadataEntry e = INFERD__V1__FRAME__METADATA_ENTRY__INIT;
	Inferd__V1__Frame__MetadataEntry *ep = &e;
	uint8_t payload[] = { 1, 2, 3, 0, 255 };
	uint8_t *buf;
	size_t len;
	inferd_frame *g;
	char err[128];

	e.key = "api-key";
	e.value = "secret-key";
	f.call_id = 0x123456789abcull;
	f.method = INFERD__V1__METHOD__METHOD_ECHO;
	f.deadline_ms = 2500;
	f.n_metadata = 1;
	f.metadata = &ep;
	f.payload.data = payload;
	f.payload.len = sizeof(payload);
	f.status = INFERD__V1__STATUS_CODE__STATUS_NOT_FOUND;
	f.status_message = "no such model";
	f.end_of_stream = 1;
	f.seq = 7;
	cr_assert_eq(inferd_frame_pack(&f, &buf, &len), 0);
	cr_assert_eq(inferd_frame_unpack(buf, len, 0, &g, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(g->call_id, f.call_id);
	cr_expect_eq(g->method, f.method);
	cr_expect_eq(g->deadline_ms, 2500);
	cr_expect_str_eq(inferd_frame_meta(g, "api-key"), "secret-key");
	cr_expect_null(inferd_frame_meta(g, "client"));
	cr_expect_eq(g->payload.len, sizeof(payload));
	cr_expect_arr_eq(g->payload.data, payload, sizeof(payload));
	cr_expect_eq(g->status, INFERD__V1__STATUS_CODE__STATUS_NOT_FOUND);
	cr_expect_str_eq(g->status_message, "no such model");
	cr_expect(g->end_of_stream);
	cr_expect_eq(g->seq, 7);
	inferd_frame_free(g);
	free(buf);
}

Test(frame, rejects_frames_over_the_limit)
{
	inferd_frame f = INFERD_FRAME_INIT;
	uint8_t big[4096] = { 0 };
	uint8_t *buf;
	size_t len;
	inferd_frame *g = (inferd_frame *)1;
	char err[128];

	f.call_id = 1;
	f.payload.data = big;
	f.payload.len = sizeof(big);
	cr_assert_eq(inferd_frame_pack(&f, &buf, &len), 0);
	cr_expect_eq(inferd_frame_unpack(buf, len, 1024, &g, err, sizeof(err)), -EMSGSIZE);
	cr_expect_null(g);
	cr_expect(strstr(err, "over the limit") != NULL, "message: %s", err);
	cr_expect_eq(inferd_frame_unpack(buf, len, len, &g, err, sizeof(err)), 0);
	inferd_frame_free(g);
	free(buf);
}

Test(frame, rejects_garbage_with_a_message)
{
	/* A varint that never ends, a length past the end, a wrong wire type. */
	static const uint8_t bad[][12] = {
		{ 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff },
		{ 0x2a, 0x7f, 'a', 'b' },
		{ 0x0d, 1, 2 },
	};
	static const size_t lens[] = { 12, 4, 3 };
	char err[128];

	for (size_t i = 0; i < 3; i++) {
		inferd_frame *g = NULL;
		err[0] = 0;
		cr_expect_eq(inferd_frame_unpack(bad[i], lens[i], 0, &g, err, sizeof(err)), -EBADMSG,
		             "case %zu", i);
		cr_expect_null(g);
		cr_expect(strstr(err, "do not decode") != NULL, "case %zu: %s", i, err);
	}
}

Test(frame, empty_buffer_is_an_empty_frame)
{
	inferd_frame *g = NULL;
	char err[64];
	cr_assert_eq(inferd_frame_unpack((const uint8_t *)"", 0, 16, &g, err, sizeof(err)), 0);
	cr_expect_eq(g->call_id, 0);
	inferd_frame_free(g);
}

Test(frame, names_methods_and_statuses)
{
	cr_expect_str_eq(inferd_method_name(INFERD__V1__METHOD__METHOD_LIST_MODELS), "ListModels");
	cr_expect_str_eq(inferd_method_name(999), "Unknown");
	cr_expect_str_eq(inferd_method_name(-1), "Unknown");
	cr_expect_eq(inferd_method_from_name("listmodels"), INFERD__V1__METHOD__METHOD_LIST_MODELS);
	cr_expect_eq(inferd_method_from_name("Unspecified"), -1);
	cr_expect_eq(inferd_method_from_name("nope"), -1);
	cr_expect_str_eq(inferd_status_name(INFERD__V1__STATUS_CODE__STATUS_DEADLINE_EXCEEDED),
	                 "DEADLINE_EXCEEDED");
	cr_expect_str_eq(inferd_status_name(INFERD__V1__STATUS_CODE__STATUS_UNAUTHENTICATED),
	                 "UNAUTHENTICATED");
	cr_expect_str_eq(inferd_status_name(17), "UNKNOWN");
	cr_expect(inferd_method_is_streaming(INFERD__V1__METHOD__METHOD_GENERATE));
	cr_expect(!inferd_method_is_streaming(INFERD__V1__METHOD__METHOD_HEALTH));
}

Test(frame, request_ids_have_the_top_bit_set)
{
	uint8_t h[4];
	inferd_wire_request_id(0x01020304, h);
	cr_expect_eq(h[0], 0x81);
	cr_expect_eq(h[1], 0x02);
	cr_expect_eq(h[2], 0x03);
	cr_expect_eq(h[3], 0x04);
	inferd_wire_request_id(0xffffffff, h);
	cr_expect_eq(h[0], 0xff);
}
