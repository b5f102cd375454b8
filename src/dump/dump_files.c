/* dump_files.c - the crash dump directory and its files, safely: no
 * symbolic link followed, nothing readable by others, nothing half-written
 * under a final name, an older dump replaced only by a complete new one. */
#include "dump/dump.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The checks on DIR itself, from its lstat/fstat. */
static int check_stat(const char *dir, const struct stat *st, struct bm_err *err)
{
    if (S_ISLNK(st->st_mode))
        return bm_err_set(err, "crash dump directory %s is a symbolic link; give the real "
                          "directory", dir);
    if (!S_ISDIR(st->st_mode))
        return bm_err_set(err, "crash dump directory %s exists and is not a directory", dir);
    if ((st->st_mode & (S_IWGRP | S_IWOTH)) &&
        !((st->st_mode & S_ISVTX) && st->st_uid == geteuid()))
        return bm_err_set(err, "crash dump directory %s is writable by other users (mode %04o, "
                          "owner uid %u): a memory image holds every secret of the guest; use a "
                          "private directory (or a sticky one that you own)", dir,
                          (unsigned)(st->st_mode & 07777), (unsigned)st->st_uid);
    return 0;
}

/* An existing final name must be something rename() can replace. */
static int check_final_names(int dirfd, const char *dir, struct bm_err *err)
{
    static const char *const names[] = { DUMP_BIN_NAME, DUMP_DMP_NAME, DUMP_META_NAME };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        struct stat st;
        if (fstatat(dirfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue;
            return bm_err_sys(err, errno, "%s/%s", dir, names[i]);
        }
        if (S_ISDIR(st.st_mode))
            return bm_err_set(err, "%s/%s is a directory; a crash dump cannot replace it", dir,
                              names[i]);
    }
    return 0;
}

int dump_open_dir(const char *dir, struct bm_err *err)
{
    if (dir == NULL || dir[0] == '\0')
        return bm_err_set(err, "empty crash dump directory name");
    /* O_NOFOLLOW: a symbolic link is refused (ELOOP), even one swapped in
     * since start-up; every later file operation is relative to this fd. */
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        struct stat st;
        if ((e == ELOOP || e == ENOTDIR) && lstat(dir, &st) == 0)
            check_stat(dir, &st, err);
        return bm_err_sys(err, e, "opening crash dump directory %s", dir);
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return bm_err_sys(err, e, "crash dump directory %s", dir);
    }
    if (check_stat(dir, &st, err) < 0 || check_final_names(fd, dir, err) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int dump_check_dir(const char *dir, struct bm_err *err)
{
    if (dir == NULL || dir[0] == '\0')
        return bm_err_set(err, "empty crash dump directory name");
    struct stat st;
    bool created = false;
    if (lstat(dir, &st) < 0) {
        if (errno == ENOTDIR)
            return bm_err_set(err, "crash dump directory %s: its parent is not a directory",
                              dir);
        if (errno != ENOENT)
            return bm_err_sys(err, errno, "crash dump directory %s", dir);
        /* Missing: create the last component if its parent exists. */
        if (mkdir(dir, 0700) < 0) {
            int e = errno;
            if (e == ENOENT)
                return bm_err_set(err, "crash dump directory %s does not exist, nor does its "
                                  "parent; create the parent first", dir);
            if (e == ENOTDIR)
                return bm_err_set(err, "crash dump directory %s: its parent is not a directory",
                                  dir);
            return bm_err_sys(err, e, "creating crash dump directory %s", dir);
        }
        created = true;
    }
    int fd = dump_open_dir(dir, err);
    if (fd < 0)
        return -1;
    /* mkdir applied the umask, which may have taken the owner's bits too. */
    if (created && fchmod(fd, 0700) < 0) {
        int e = errno;
        close(fd);
        return bm_err_sys(err, e, "chmod 0700 %s", dir);
    }
    /* Really create a file: access(2) says yes to root even where root
     * cannot write (immutable directory, read-only bind mount, SELinux). */
    char tmp[64];
    int t = dump_create_temp(fd, "probe", tmp, sizeof tmp, err);
    if (t < 0) {
        bm_err_prefix(err, "crash dump directory %s is not writable", dir);
        close(fd);
        return -1;
    }
    close(t);
    unlinkat(fd, tmp, 0);
    close(fd);
    return 0;
}

int dump_create_temp(int dirfd, const char *final_name, char *tmp_name, size_t len,
                     struct bm_err *err)
{
    for (int tries = 0; tries < 100; tries++) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            r = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40) ^
                (uint64_t)tries * 0x9e3779b97f4a7c15ull;
        }
        if (snprintf(tmp_name, len, ".%s.tmp-%012llx", final_name,
                     (unsigned long long)(r & 0xffffffffffffull)) >= (int)len)
            return bm_err_set(err, "temporary name for %s too long", final_name);
        int fd = openat(dirfd, tmp_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        0600);
        if (fd >= 0) {
            /* The umask may only narrow 0600; make sure nothing widened it
             * (a default ACL on the directory could). */
            if (fchmod(fd, 0600) < 0) {
                int e = errno;
                close(fd);
                unlinkat(dirfd, tmp_name, 0);
                bm_err_sys(err, e, "chmod 0600 %s", tmp_name);
                tmp_name[0] = '\0';
                return -1;
            }
            return fd;
        }
        if (errno != EEXIST) {
            int e = errno;
            const char *why = e == EROFS ? " (read-only filesystem)"
                              : e == EACCES || e == EPERM ? " (no permission to create files there)"
                              : e == ENOSPC || e == EDQUOT ? " (no space or inodes left)"
                              : "";
            bm_err_sys(err, e, "cannot create %s%s", tmp_name, why);
            tmp_name[0] = '\0';
            return -1;
        }
    }
    tmp_name[0] = '\0';
    return bm_err_set(err, "cannot find a free temporary name for %s", final_name);
}

int dump_commit(int dirfd, const char *const img_tmp[], const char *const img_name[], size_t n,
                const char *meta_tmp, const char *stale, struct bm_err *err)
{
    /* Final names always belong together, and the metadata file is the mark
     * of a complete dump: the old metadata goes first (made durable before
     * an image is replaced), with any image of a format this dump does not
     * write; the new images take their names, the new metadata comes last.
     * Each rename is atomic. */
    if (unlinkat(dirfd, DUMP_META_NAME, 0) < 0 && errno != ENOENT)
        return bm_err_sys(err, errno, "removing the previous " DUMP_META_NAME);
    if (stale != NULL && unlinkat(dirfd, stale, 0) < 0 && errno != ENOENT)
        return bm_err_sys(err, errno, "removing the previous %s", stale);
    if (fsync(dirfd) < 0)
        return bm_err_sys(err, errno, "fsync of the crash dump directory");
    size_t done = 0;
    int e = 0;
    const char *what = NULL;
    for (; done < n; done++)
        if (renameat(dirfd, img_tmp[done], dirfd, img_name[done]) < 0) {
            e = errno;
            what = img_name[done];
            break;
        }
    if (what == NULL && renameat(dirfd, meta_tmp, dirfd, DUMP_META_NAME) < 0) {
        e = errno;
        what = DUMP_META_NAME;
    }
    if (what == NULL && fsync(dirfd) < 0) {
        e = errno;
        what = "the crash dump directory (fsync)";
        unlinkat(dirfd, DUMP_META_NAME, 0);
    }
    if (what == NULL)
        return 0;
    /* New images without metadata: not a dump. */
    for (size_t i = 0; i < done; i++)
        unlinkat(dirfd, img_name[i], 0);
    return bm_err_sys(err, e, "renaming the crash dump to %s", what);
}
