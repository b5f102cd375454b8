/* dump_files.c - the crash dump directory and its files, safely: no
 * symbolic link followed, nothing readable by others, nothing half-written
 * under a final name. */
#include "dump/dump.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

static int check_existing(const char *dir, const struct stat *st, struct bm_err *err)
{
    if (S_ISLNK(st->st_mode))
        return bm_err_set(err, "%s is a symbolic link; give the real directory", dir);
    if (!S_ISDIR(st->st_mode))
        return bm_err_set(err, "%s is not a directory", dir);
    if ((st->st_mode & (S_IWGRP | S_IWOTH)) &&
        !((st->st_mode & S_ISVTX) && st->st_uid == geteuid()))
        return bm_err_set(err, "%s is writable by other users (mode %04o): a crash dump holds every "
                          "secret of the guest; use a private directory (or one with the sticky "
                          "bit that you own)", dir, (unsigned)(st->st_mode & 07777));
    struct statvfs vfs;
    if (statvfs(dir, &vfs) == 0 && (vfs.f_flag & ST_RDONLY))
        return bm_err_set(err, "%s is on a read-only filesystem", dir);
    if (access(dir, W_OK | X_OK) < 0)
        return bm_err_sys(err, errno, "%s is not writable", dir);
    return 0;
}

int dump_check_dir(const char *dir, struct bm_err *err)
{
    struct stat st;
    if (dir == NULL || dir[0] == '\0')
        return bm_err_set(err, "empty directory name");
    if (lstat(dir, &st) == 0)
        return check_existing(dir, &st, err);
    if (errno != ENOENT)
        return bm_err_sys(err, errno, "%s", dir);
    char copy[4096];
    if (snprintf(copy, sizeof copy, "%s", dir) >= (int)sizeof copy)
        return bm_err_set(err, "directory name too long");
    const char *parent = dirname(copy);
    struct stat pst;
    if (stat(parent, &pst) < 0 || !S_ISDIR(pst.st_mode))
        return bm_err_set(err, "%s does not exist, and neither does its parent %s", dir, parent);
    if (mkdir(dir, 0700) < 0)
        return bm_err_sys(err, errno, "creating %s", dir);
    if (lstat(dir, &st) < 0)
        return bm_err_sys(err, errno, "%s", dir);
    return check_existing(dir, &st, err);
}

int dump_open_dir(const char *dir, struct bm_err *err)
{
    /* O_NOFOLLOW: a directory swapped for a link since start-up is refused. */
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return bm_err_sys(err, errno, "opening crash dump directory %s", dir);
    struct stat st;
    if (fstat(fd, &st) < 0 || check_existing(dir, &st, err) < 0) {
        close(fd);
        return bm_err_set(err, "crash dump directory %s is no longer usable", dir);
    }
    return fd;
}

int dump_create_temp(int dirfd, const char *final_name, char *tmp_name, size_t len,
                     struct bm_err *err)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long seed = (unsigned long)ts.tv_nsec ^ ((unsigned long)getpid() << 16);
    for (int tries = 0; tries < 100; tries++) {
        seed = seed * 6364136223846793005ul + 1442695040888963407ul;
        snprintf(tmp_name, len, ".%s.tmp-%08lx", final_name, (seed >> 32) & 0xfffffffful);
        int fd = openat(dirfd, tmp_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        0600);
        if (fd >= 0) {
            /* The umask may only narrow 0600; make sure nothing widened it. */
            if (fchmod(fd, 0600) < 0) {
                int e = errno;
                close(fd);
                unlinkat(dirfd, tmp_name, 0);
                return bm_err_sys(err, e, "fchmod %s", tmp_name);
            }
            return fd;
        }
        if (errno != EEXIST)
            return bm_err_sys(err, errno, "creating %s in the crash dump directory", tmp_name);
    }
    return bm_err_set(err, "cannot find a free temporary name for %s", final_name);
}
