/*
 * ramflow - RF_GUEST_WRITES, for functions that play the guest.
 *
 * Live migration reads guest pages while the guest writes them: that is
 * the design, not a bug.  Dirty tracking (KVM's log, userfaultfd, or
 * rf_ram_source_mark_dirty) sends a page again once it has changed, and
 * the final round runs with the guest paused.  A real guest's stores come
 * from a vCPU inside KVM_RUN, which ThreadSanitizer never sees.
 *
 * The simulated guests (the test VM's writer and thread guest, the tests'
 * writer threads) store to guest memory from ordinary host threads, which
 * TSan does see: every page the engine reads meanwhile would be reported.
 * A function marked RF_GUEST_WRITES is not instrumented, so its stores
 * are as invisible to TSan as a vCPU's, and TSan reports only races on
 * the engine's own state.  Keep such a function to the stores into guest
 * memory; its bookkeeping (counters, locks, dirty marks) belongs in its
 * instrumented caller.  Outside a TSan build the attribute changes
 * nothing but inlining.
 */
#ifndef RF_UTIL_GUEST_WRITES_H
#define RF_UTIL_GUEST_WRITES_H

#define RF_GUEST_WRITES __attribute__((noinline, no_sanitize("thread")))

#endif
