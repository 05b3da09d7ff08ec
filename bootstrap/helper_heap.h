/*
 * How the download helper's heap is set up. libzip parses the central
 * directory with a few small mallocs per entry, and glibc grows a thread's
 * heap a page at a time: 2,400 page faults and 1,800 heap extensions for
 * the 26,000 entries of the site-packages bench bundle, 40-70 ms in a VM
 * where a page fault is slow, with the workers waiting for that parse. Grown
 * in 16 MiB steps and backed by transparent huge pages, the same parse takes
 * half the time. glibc reads these settings only from GLIBC_TUNABLES at
 * start-up, so the front binary sets that variable for the helper alone
 * (never for the handler), unless it is set already; other C libraries
 * ignore it.
 */
#ifndef CB_HELPER_HEAP_H
#define CB_HELPER_HEAP_H

#define CB_HELPER_TUNABLES "glibc.malloc.hugetlb=1:glibc.malloc.top_pad=16777216"

/*
 * Huge pages round each thread's heap up to 2 MiB: 5-7 MiB more resident
 * measured on the bench bundles. So only a memory budget of at least
 * CB_HELPER_TUNED_BUDGET_MIN gets them, and the extraction counts
 * CB_HELPER_TUNED_HEAP_BYTES of that budget for the rounding.
 */
#define CB_HELPER_TUNED_BUDGET_MIN (64ull * 1024u * 1024u)
#define CB_HELPER_TUNED_HEAP_BYTES (8ull * 1024u * 1024u)

#endif
