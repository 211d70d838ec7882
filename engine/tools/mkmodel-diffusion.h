/* inferd-mkmodel diffusion: a tiny random-weight Stable Diffusion pipeline in
 * the diffusers folder layout (see mkmodel-diffusion.c). */
#ifndef INFERD_MKMODEL_DIFFUSION_H
#define INFERD_MKMODEL_DIFFUSION_H

/* Runs the subcommand: argv[0] is "diffusion", options follow.
 * @return the exit code: 0 done, 1 I/O or memory error, 2 usage error. */
int mkmodel_diffusion_main(int argc, char **argv);

#endif
