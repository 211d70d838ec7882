/* libFuzzer target: the frame decoder and every request message the daemon decodes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const ProtobufCMessageDescriptor *const requests[] = {
		&inferd__v1__health_request__descriptor,
		&inferd__v1__list_models_request__descriptor,
		&inferd__v1__stats_request__descriptor,
		&inferd__v1__cancel_request__descriptor,
		&inferd__v1__echo_request__descriptor,
		&inferd__v1__generate_request__descriptor,
		&inferd__v1__generate_image_request__descriptor,
		&inferd__v1__image_stream_request__descriptor,
		&inferd__v1__tokenize_request__descriptor,
		&inferd__v1__load_adapter_request__descriptor,
		&inferd__v1__unload_adapter_request__descriptor,
	};
	inferd_frame *f = NULL;
	char err[256];

	if (inferd_frame_unpack(data, size, 1 << 20, &f, err, sizeof(err)) == 0) {
		(void)inferd_frame_meta(f, "api-key");
		(void)inferd_method_name((int)f->method);
		(void)inferd_status_name((int)f->status);
		for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
			ProtobufCMessage *m = protobuf_c_message_unpack(requests[i], NULL,
			                                                f->payload.len, f->payload.data);
			if (m)
				protobuf_c_message_free_unpacked(m, NULL);
		}
		/* Re-encode what decoded: must not crash either. */
		uint8_t *buf;
		size_t len;
		if (inferd_frame_pack(f, &buf, &len) == 0)
			free(buf);
		inferd_frame_free(f);
	}
	return 0;
}
