/*
 * log.c - one line per event to stderr or syslog (see include/sluice/log.h).
 *
 * A line is formatted into a stack buffer and written with one write(2), so
 * lines from several threads never interleave.
 */
#include "sluice/log.h"
#include "sluice/proc_id.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "sluice";
static int log_syslog;
static enum log_level log_min = LOG_LVL_INFO;

void log_init(const char *prog, int use_syslog)
{
    log_prog = prog;
    log_syslog = use_syslog;
    if (use_syslog)
        openlog(prog, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log_set_level(enum log_level min)
{
    log_min = min;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    static const char *const names[] = {"debug", "info", "warning", "error"};
    static const int prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};
    char line[2048];
    va_list ap;

    if (lvl < log_min)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line))
        n = sizeof(line) - 1;
    /* Log lines may carry client text: never let it forge a second line. */
    for (int i = 0; i < n; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = ' ';
    if (log_syslog) {
        syslog(prio[lvl], "%s", line);
        return;
    }

    char out[2300];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int m = snprintf(out, sizeof(out), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d]: %s%s%s\n",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, log_prog, (int)proc_id(),
                     lvl == LOG_LVL_INFO ? "" : names[lvl], lvl == LOG_LVL_INFO ? "" : ": ", line);
    if (m > 0) {
        ssize_t w = write(STDERR_FILENO, out, (size_t)m < sizeof(out) ? (size_t)m : sizeof(out));
        (void)w; /* nowhere left to report a failing stderr */
    }
}
