/* log.h - bsodmon's diagnostic lines on stderr.
 *
 * One line per call, written whole (threads of the host mode never mix
 * their lines), "bsodmon: " first and, in a thread that watches one domain
 * of a host, the domain's name after it ("bsodmon: win10-1: ..."), so one
 * stream serves a whole host. The tag is the one piece of thread-local
 * state in bsodmon: which VM the current thread is about (design-notes).
 */
#ifndef BM_BASE_LOG_H
#define BM_BASE_LOG_H

#include <stdarg.h>

void bm_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bm_vlog(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* The calling thread's tag (copied; NULL or "" for none). */
void bm_log_set_tag(const char *tag);

#endif
