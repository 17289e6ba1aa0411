/*
 * backup.h: what backup.c and restore.c share: backup.json, file hashing.
 */
#ifndef LETHE_BACKUP_H
#define LETHE_BACKUP_H

#include <stddef.h>
#include <stdint.h>

typedef struct backup_info {
    char created_at[40];
    int format;
    char store_id[40];       /* hex */
    char digest[65];
    int64_t log_seq;
    char log_hash[65];
    char catalog_hash[65];   /* BLAKE2b-256 of catalog.db's bytes */
} backup_info;

/* Parse and check backup.json (hostile input: a fuzz target). */
int backup_info_parse(const char *text, size_t len, backup_info *bi, char *msg, size_t msg_len);
/* BLAKE2b-256 of a file's bytes, hex. */
int backup_file_hash(const char *path, char hex[65], char *msg, size_t msg_len);
/* Remove a flat folder and its files (keyring files zeroed first); no
 * allocation, so it works on out-of-memory failure paths. */
void restore_remove_tree(const char *dir);
/* dir/name (lethe_free). */
char *backup_join(const char *dir, const char *name);

#endif
