// SPDX-License-Identifier: GPL-2.0
/*
 * fpu-probe: keep known values in ymm0-ymm15 and check, over and over, that
 * they are still there while Linux and Xen switch this process and its vCPU
 * around. A process's vector registers are part of its state: if another
 * process's (or vCPU's) values show up, libc's memcpy/strlen and everything
 * built on them compute garbage.
 *
 *   fpu-probe SECONDS ID
 *
 * Prints one line per corrupted check (at most 8) and a summary line
 * "fpu-probe ID checks=N bad=M"; exits 1 if any check was bad, 2 if the CPU
 * has no AVX. Built static by tests/xen/run.sh for the Dom0 initramfs.
 */
#include <cpuid.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t want[64] __attribute__((aligned(32)));
static uint64_t got[64] __attribute__((aligned(32)));

#define LD(n) "vmovdqu " #n "*32(%0), %%ymm" #n "\n\t"
#define ST(n) "vmovdqu %%ymm" #n ", " #n "*32(%0)\n\t"

/* The compiler is built without -mavx: it never touches the upper halves. */
static void load(void)
{
	asm volatile(LD(0) LD(1) LD(2) LD(3) LD(4) LD(5) LD(6) LD(7)
		     LD(8) LD(9) LD(10) LD(11) LD(12) LD(13) LD(14) LD(15)
		     : : "r"(want)
		     : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
		       "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "memory");
}

static void store(void)
{
	asm volatile(ST(0) ST(1) ST(2) ST(3) ST(4) ST(5) ST(6) ST(7)
		     ST(8) ST(9) ST(10) ST(11) ST(12) ST(13) ST(14) ST(15)
		     : : "r"(got) : "memory");
}

static int has_avx(void)
{
	unsigned int a, b, c, d;

	if (!__get_cpuid(1, &a, &b, &c, &d))
		return 0;
	return (c & bit_AVX) && (c & bit_OSXSAVE);
}

int main(int argc, char **argv)
{
	int secs = argc > 1 ? atoi(argv[1]) : 30;
	unsigned int id = argc > 2 ? (unsigned int)atoi(argv[2]) : 0;
	long checks = 0, bad = 0;
	time_t end;

	if (!has_avx()) {
		printf("fpu-probe %u: no AVX on this CPU\n", id);
		return 2;
	}
	for (int i = 0; i < 64; i++)
		want[i] = 0x0101010101010101ULL * (uint64_t)(i + 1) ^ ((uint64_t)id << 56);
	end = time(NULL) + secs;
	load();
	while (time(NULL) < end) {
		for (volatile long k = 0; k < 200000; k++)
			;
		if (checks % 8 == 0)
			sched_yield();
		store();
		checks++;
		for (int r = 0; r < 16; r++) {
			uint64_t *g = &got[r * 4], *w = &want[r * 4];

			if (g[0] == w[0] && g[1] == w[1] && g[2] == w[2] && g[3] == w[3])
				continue;
			if (++bad <= 8)
				printf("fpu-probe %u: check %ld: ymm%d = %016llx %016llx %016llx %016llx, want %016llx %016llx %016llx %016llx\n",
				       id, checks, r, (unsigned long long)g[3], (unsigned long long)g[2],
				       (unsigned long long)g[1], (unsigned long long)g[0],
				       (unsigned long long)w[3], (unsigned long long)w[2],
				       (unsigned long long)w[1], (unsigned long long)w[0]);
			fflush(stdout);
			load();
			break;
		}
	}
	printf("fpu-probe %u checks=%ld bad=%ld\n", id, checks, bad);
	return bad ? 1 : 0;
}
