/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Which file a decision is about. Today the file as the hook sees it; on
 * overlayfs this is where the real (upper or lower) file that is actually
 * read and mapped is found, so that the hash, the cache and the seal all
 * concern that one inode.
 * Part of enforcer.bpf.c (one translation unit): include it from there only.
 */
#ifndef IMGSIGN_ENF_FS_H
#define IMGSIGN_ENF_FS_H

/* The file whose bytes a mapping or exec of `file` actually runs. */
static __always_inline struct file *real_file(struct file *file)
{
	return file;
}

#endif /* IMGSIGN_ENF_FS_H */
