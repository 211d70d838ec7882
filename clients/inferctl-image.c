/* inferctl image: one streaming GenerateImage call; progress frames to stderr, each finished
 * image's PNG bytes written as they come (the client never decodes them); Ctrl-C cancels. */
#include "inferctl.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IMAGES 16
#define MAX_INIT_BYTES (256u << 20) /* an init image file read as it is, at most */

static const char help[] =
"usage: inferctl image [OPTIONS] -o FILE PROMPT|-\n"
"Generates images from PROMPT (or from standard input with '-') with a diffusion model and\n"
"writes each one as a PNG file: FILE for one image, FILE with -K inserted before its\n"
"extension for several (out.png -> out-0.png, out-1.png...). Prints a line per image (path,\n"
"size, seed, seconds); with --json one JSON object instead. Ctrl-C sends Cancel for the call\n"
"and exits with status 5 once the daemon confirms; a second Ctrl-C quits at once.\n"
"  -o, --output FILE         where to write the PNG ('-': standard output, one image only)\n"
"  -m, --model NAME          the model (may be left out when the daemon serves one)\n"
"      --steps N             denoising steps, 1-1000 (default: the model's)\n"
"      --width W             image width in pixels, 8-16384 (default: the model's)\n"
"      --height H            image height in pixels, 8-16384 (default: the model's)\n"
"      --seed S              reproducible noise (each image's seed is printed)\n"
"      --scheduler NAME      ddim, euler, euler_a, dpm++2m, lcm (default: the model's)\n"
"      --guidance G          classifier-free guidance scale, 0-100 (default: the model's)\n"
"      --negative TEXT       negative prompt\n"
"      --init FILE           image-to-image from this PNG or JPEG file (sent as it is)\n"
"      --strength S          how much of --init is redrawn, in (0, 1] (default 0.8)\n"
"  -n, --num-images N        images to generate, 1-16 (default 1)\n"
"      --progress            print 'step i/n' lines on standard error as steps finish\n";

enum {
	OPT_STEPS = 1200, OPT_WIDTH, OPT_HEIGHT, OPT_SEED, OPT_SCHEDULER, OPT_GUIDANCE, OPT_NEGATIVE,
	OPT_INIT, OPT_STRENGTH, OPT_PROGRESS,
};


/* ---- output paths ---------------------------------------------------------------------------- */

/* FILE for one image; "dir/name-K.ext" (or "name-K" without an extension) for several. */
static char *image_path(const char *file, unsigned n_images, unsigned k)
{
	const char *base = strrchr(file, '/'), *dot;
	size_t stem, len = strlen(file) + 16;
	char *p = malloc(len);

	if (!p)
		return NULL;
	if (n_images <= 1) {
		snprintf(p, len, "%s", file);
		return p;
	}
	base = base ? base + 1 : file;
	dot = strrchr(base, '.');
	if (!dot || dot == base) /* no extension, or a name like ".png" */
		dot = file + strlen(file);
	stem = (size_t)(dot - file);
	snprintf(p, len, "%.*s-%u%s", (int)stem, file, k, dot);
	return p;
}

/* ---- the call's state ---------------------------------------------------------------------- */

struct img_done {
	char *path;
	size_t bytes;
	uint32_t width, height;
	uint64_t seed;
	double total_s, queue_s, client_s;
};

struct img_state {
	const struct ctl *ctl;
	const char *output;
	unsigned n_images;
	bool progress, done, local, failed;
	int status;
	char message[512];
	struct img_done got[MAX_IMAGES];
	unsigned n_got;
	uint32_t last_step, last_index; /* the last progress line printed */
	double t_start;
};

static int write_png(struct img_state *s, const Inferd__V1__GenerateImageReply *rep)
{
	struct img_done *d;
	unsigned k = rep->image_index;
	FILE *f;
	char *path;
	bool to_stdout = strcmp(s->output, "-") == 0;

	if (k >= s->n_images || s->got[k].path) {
		ctl_err(s->ctl, "the daemon sent image %u again or out of range (%u asked for)", k,
		        s->n_images);
		return -1;
	}
	if (rep->image.len < 8 || memcmp(rep->image.data, "\x89PNG\r\n\x1a\n", 8) != 0) {
		ctl_err(s->ctl, "image %u from the daemon is not a PNG (%zu bytes)", k, rep->image.len);
		return -1;
	}
	if (!(path = to_stdout ? strdup("-") : image_path(s->output, s->n_images, k))) {
		ctl_err(s->ctl, "out of memory");
		return -1;
	}
	f = to_stdout ? stdout : fopen(path, "wb");
	if (!f || fwrite(rep->image.data, 1, rep->image.len, f) != rep->image.len ||
	    (to_stdout ? fflush(f) : fclose(f)) != 0) {
		ctl_err(s->ctl, "cannot write %s: %s", to_stdout ? "standard output" : path,
		        strerror(errno));
		if (f && !to_stdout)
			fclose(f);
		free(path);
		return -1;
	}
	d = &s->got[k];
	d->path = path;
	d->bytes = rep->image.len;
	d->width = rep->width;
	d->height = rep->height;
	d->seed = rep->seed;
	d->total_s = rep->total_seconds;
	d->queue_s = rep->queue_seconds;
	d->client_s = ctl_now() - s->t_start;
	s->n_got++;
	if (!s->ctl->json) {
		/* with -o - the PNG is on stdout: the line goes to stderr */
		fprintf(to_stdout ? stderr : stdout, "%s %ux%u seed %llu %.2f s\n",
		        to_stdout ? "(stdout)" : path, d->width, d->height,
		        (unsigned long long)d->seed, d->total_s > 0 ? d->total_s : d->client_s);
		fflush(to_stdout ? stderr : stdout);
	}
	return 0;
}

static int on_frame(const struct inferd_reply *r, void *arg)
{
	struct img_state *s = arg;

	if (r->payload_len && !s->failed) {
		Inferd__V1__GenerateImageReply *rep =
			inferd__v1__generate_image_reply__unpack(NULL, r->payload_len, r->payload);
		if (!rep) {
			ctl_err(s->ctl, "a reply frame does not decode as GenerateImageReply");
			s->failed = true;
		} else {
			if (rep->image.len) {
				if (write_png(s, rep) < 0)
					s->failed = true;
			} else if (s->progress && rep->total_steps &&
			           (rep->step != s->last_step || rep->image_index != s->last_index)) {
				/* one line per step, also when the daemon repeats its last count */
				s->last_step = rep->step;
				s->last_index = rep->image_index;
				if (s->n_images > 1)
					fprintf(stderr, "image %u: step %u/%u\n", rep->image_index, rep->step,
					        rep->total_steps);
				else
					fprintf(stderr, "step %u/%u\n", rep->step, rep->total_steps);
			}
			inferd__v1__generate_image_reply__free_unpacked(rep, NULL);
		}
	}
	if (r->end_of_stream) {
		s->done = true;
		s->status = r->status;
		s->local = r->local;
		snprintf(s->message, sizeof(s->message), "%s", r->status_message);
	}
	return 0;
}

/* The last frame came, or writing an image failed (the call is then cancelled). */
static bool img_finished(void *arg)
{
	const struct img_state *s = arg;
	return s->done || s->failed;
}

static int print_json(const struct img_state *s)
{
	json_t *arr = json_array(), *o;

	if (!arr)
		return 1;
	for (unsigned k = 0; k < s->n_images; k++) {
		const struct img_done *d = &s->got[k];
		json_array_append_new(arr, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f}",
		                                     "path", d->path, "index", (json_int_t)k,
		                                     "width", (json_int_t)d->width,
		                                     "height", (json_int_t)d->height,
		                                     "seed", (json_int_t)d->seed,
		                                     "bytes", (json_int_t)d->bytes,
		                                     "total_seconds", d->total_s,
		                                     "queue_seconds", d->queue_s,
		                                     "client_seconds", d->client_s));
	}
	o = json_pack("{s:o, s:f}", "images", arr, "client_seconds", ctl_now() - s->t_start);
	return ctl_print_json(o);
}

/* ---- arguments ------------------------------------------------------------------------------ */

static int read_file(const struct ctl *ctl, const char *path, uint8_t **data, size_t *len)
{
	FILE *f = fopen(path, "rb");
	size_t cap = 1 << 16, n = 0, got;
	uint8_t *buf = NULL, *nb;

	if (!f) {
		ctl_err(ctl, "--init: cannot open %s: %s", path, strerror(errno));
		return CTL_EXIT_USAGE;
	}
	for (;;) {
		if (!(nb = realloc(buf, cap)))
			goto nomem;
		buf = nb;
		got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (n < cap)
			break;
		if (cap >= MAX_INIT_BYTES) {
			ctl_err(ctl, "--init: %s is larger than %u MiB", path, MAX_INIT_BYTES >> 20);
			goto fail;
		}
		cap *= 2;
	}
	if (ferror(f)) {
		ctl_err(ctl, "--init: cannot read %s: %s", path, strerror(errno));
		goto fail;
	}
	if (n == 0) {
		ctl_err(ctl, "--init: %s is empty", path);
		goto fail;
	}
	fclose(f);
	*data = buf;
	*len = n;
	return 0;
nomem:
	ctl_err(ctl, "out of memory");
fail:
	fclose(f);
	free(buf);
	return CTL_EXIT_USAGE;
}

static int parse_range(const struct ctl *ctl, const char *opt, const char *arg, uint64_t lo,
                       uint64_t hi, uint32_t *out)
{
	uint64_t v;
	int rc = ctl_parse_u64(ctl, opt, arg, hi, &v);

	if (rc)
		return rc;
	if (v < lo) {
		ctl_err(ctl, "%s: expected a whole number from %llu to %llu, got '%s'", opt,
		        (unsigned long long)lo, (unsigned long long)hi, arg);
		return CTL_EXIT_USAGE;
	}
	*out = (uint32_t)v;
	return 0;
}

/* ---- the command --------------------------------------------------------------------------- */

int ctl_cmd_image(struct ctl *ctl, int argc, char **argv)
{
	static const struct option lo[] = {
		CTL_GLOBAL_LONGOPTS,
		{ "output", required_argument, NULL, 'o' },
		{ "model", required_argument, NULL, 'm' },
		{ "steps", required_argument, NULL, OPT_STEPS },
		{ "width", required_argument, NULL, OPT_WIDTH },
		{ "height", required_argument, NULL, OPT_HEIGHT },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "scheduler", required_argument, NULL, OPT_SCHEDULER },
		{ "guidance", required_argument, NULL, OPT_GUIDANCE },
		{ "negative", required_argument, NULL, OPT_NEGATIVE },
		{ "init", required_argument, NULL, OPT_INIT },
		{ "strength", required_argument, NULL, OPT_STRENGTH },
		{ "num-images", required_argument, NULL, 'n' },
		{ "progress", no_argument, NULL, OPT_PROGRESS },
		{ NULL, 0, NULL, 0 },
	};
	Inferd__V1__GenerateImageRequest req = INFERD__V1__GENERATE_IMAGE_REQUEST__INIT;
	struct img_state s = { .ctl = ctl, .n_images = 1 };
	const char *init_path = NULL;
	uint8_t *init = NULL;
	size_t init_len = 0;
	char *prompt = NULL;
	uint64_t u, call_id = 0;
	double d, strength = 0;
	int opt, rc = 0;

	req.model = "";
	req.negative_prompt = "";
	req.scheduler = "";
	optind = 0;
	while ((opt = getopt_long(argc, argv, CTL_GLOBAL_SHORTOPTS "o:m:n:", lo, NULL)) != -1) {
		switch (opt) {
		case CTL_OPT_HELP: fputs(help, stdout); return 0;
		case 'o': s.output = optarg; break;
		case 'm': req.model = optarg; break;
		case OPT_STEPS: rc = parse_range(ctl, "--steps", optarg, 1, 1000, &req.steps); break;
		case OPT_WIDTH: rc = parse_range(ctl, "--width", optarg, 8, 16384, &req.width); break;
		case OPT_HEIGHT:
			rc = parse_range(ctl, "--height", optarg, 8, 16384, &req.height);
			break;
		case OPT_SEED:
			if (!(rc = ctl_parse_u64(ctl, "--seed", optarg, UINT64_MAX, &u))) {
				req.use_seed = true;
				req.seed = u;
			}
			break;
		case OPT_SCHEDULER:
			if (!*optarg) {
				ctl_err(ctl, "--scheduler: expected a name");
				rc = CTL_EXIT_USAGE;
			}
			req.scheduler = optarg;
			break;
		case OPT_GUIDANCE:
			if (!(rc = ctl_parse_double(ctl, "--guidance", optarg, 0, 100, &d)))
				req.guidance_scale = (float)d;
			break;
		case OPT_NEGATIVE: req.negative_prompt = optarg; break;
		case OPT_INIT: init_path = optarg; break;
		case OPT_STRENGTH:
			if (!(rc = ctl_parse_double(ctl, "--strength", optarg, 0, 1, &strength)) &&
			    strength <= 0) {
				ctl_err(ctl, "--strength: expected a number in (0, 1], got '%s'", optarg);
				rc = CTL_EXIT_USAGE;
			}
			break;
		case 'n': {
			uint32_t n;
			if (!(rc = parse_range(ctl, "--num-images", optarg, 1, MAX_IMAGES, &n)))
				s.n_images = n;
			break;
		}
		case OPT_PROGRESS: s.progress = true; break;
		default: rc = ctl_global_opt(ctl, opt, optarg);
		}
		if (rc)
			return rc;
	}
	if (!s.output || !*s.output) {
		ctl_err(ctl, "missing -o FILE (where to write the PNG); see 'inferctl image --help'");
		return CTL_EXIT_USAGE;
	}
	if (strcmp(s.output, "-") == 0 && s.n_images > 1) {
		ctl_err(ctl, "-o - (standard output) takes one image, not %u", s.n_images);
		return CTL_EXIT_USAGE;
	}
	if (strcmp(s.output, "-") == 0 && ctl->json) {
		ctl_err(ctl, "-o - (standard output) and --json do not go together");
		return CTL_EXIT_USAGE;
	}
	if (strength > 0 && !init_path) {
		ctl_err(ctl, "--strength needs --init FILE");
		return CTL_EXIT_USAGE;
	}
	if (argc - optind != 1) {
		ctl_err(ctl, "expected one PROMPT argument (or '-' for standard input); "
		        "see 'inferctl image --help'");
		return CTL_EXIT_USAGE;
	}
	if (init_path) {
		if ((rc = read_file(ctl, init_path, &init, &init_len)) != 0)
			return rc;
		req.init_image.data = init;
		req.init_image.len = init_len;
		req.strength = strength > 0 ? (float)strength : 0.8f;
	}
	if ((rc = ctl_read_text(ctl, argv[optind], &prompt)) != 0)
		goto cleanup;
	req.prompt = prompt;
	req.num_images = s.n_images;
	req.progress = s.progress;
	if ((rc = ctl_connect(ctl)) != 0)
		goto cleanup;

	s.t_start = ctl_now();
	if ((rc = ctl_stream_call(ctl, INFERD__V1__METHOD__METHOD_GENERATE_IMAGE, &req.base,
	                          on_frame, &s, img_finished, &call_id)) != 0)
		goto cleanup;
	if (s.failed) {
		/* a file could not be written or the daemon sent nonsense: stop the work */
		inferd_client_cancel(ctl->client, call_id);
		rc = 1;
		goto cleanup;
	}
	if (s.status != INFERD__V1__STATUS_CODE__STATUS_OK) {
		rc = ctl_report(ctl, s.status, s.local, s.message);
		goto cleanup;
	}
	if (s.n_got != s.n_images) {
		ctl_err(ctl, "the daemon finished the call with %u of %u images", s.n_got,
		        s.n_images);
		rc = CTL_EXIT_SERVER;
		goto cleanup;
	}
	rc = ctl->json ? print_json(&s) : 0;
cleanup:
	for (unsigned k = 0; k < MAX_IMAGES; k++)
		free(s.got[k].path);
	free(prompt);
	free(init);
	return rc;
}
