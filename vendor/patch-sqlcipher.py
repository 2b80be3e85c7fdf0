#!/usr/bin/env python3
"""Applies Ward's three changes to the SQLCipher amalgamation.

1. SQLite's unix VFS: a hash table of open files beside its linked list.

SQLite keeps one unixInodeInfo object per open database file in a linked list, and
every open of a database file walks that list twice (findReusableFd, findInodeInfo).
With thousands of clinic files open at once those walks were the largest single cost
of opening a clinic. This change adds a hash table of the same objects, keyed by the
same (device, inode) pair, and uses it for both lookups. The list stays as it was.

2. Memory statistics off by default (SQLITE_DEFAULT_MEMSTATUS 0). With them on, every
allocation SQLite makes takes one process-wide mutex to count it; the server's blocking
threads, each on its own clinic's connection, queued on that mutex for a third of a
page's CPU. Ward reads none of those statistics.

3. A smaller lookaside buffer per connection by default (7,200 bytes instead of 48,000).
Every connection allocates and touches its whole lookaside buffer when it opens, and
Ward holds thousands of connections open; the small default saves about 40 KiB of
resident memory per open clinic for no measurable CPU.

Usage: vendor/patch-sqlcipher.py <sqlcipher.c>   (edits the file in place; refuses to
run twice or on a source whose text differs from the one it was written for).
"""
import sys

path = sys.argv[1]
src = open(path, encoding="utf-8").read()
MARK = "Ward: inode hash"
if MARK in src:
    sys.exit(f"{path} is already patched")


def replace_once(old, new):
    global src
    n = src.count(old)
    if n != 1:
        sys.exit(f"expected one occurrence, found {n}: {old[:60]!r}")
    src = src.replace(old, new)


# 1. A hash chain pointer beside the list pointers.
replace_once(
    "  unixInodeInfo *pNext;           /* List of all unixInodeInfo objects */\n"
    "  unixInodeInfo *pPrev;           /*    .... doubly linked */\n",
    "  unixInodeInfo *pNext;           /* List of all unixInodeInfo objects */\n"
    "  unixInodeInfo *pPrev;           /*    .... doubly linked */\n"
    "  unixInodeInfo *pHashNext;       /* Next in the same inodeHash bucket */\n",
)

# 2. The table and its lookup, after the list head.
replace_once(
    "static unixInodeInfo *inodeList = 0;  /* All unixInodeInfo objects */\n",
    "static unixInodeInfo *inodeList = 0;  /* All unixInodeInfo objects */\n"
    "\n"
    "/*\n"
    "** Ward: inode hash. The same unixInodeInfo objects as inodeList, in\n"
    "** buckets by file id, so that an open does not walk every open file.\n"
    "** Must hold unixBigLock in order to read or write it.\n"
    "*/\n"
    "#define UNIX_INODE_HASH_SIZE 16384   /* a power of two */\n"
    "static unixInodeInfo *inodeHash[UNIX_INODE_HASH_SIZE];\n"
    "static unixInodeInfo **inodeBucket(const struct unixFileId *pId){\n"
    "  u64 h = (u64)pId->dev * 0x9E3779B97F4A7C15ULL;\n"
    "#if OS_VXWORKS\n"
    "  h ^= (u64)(uptr)pId->pId;\n"
    "#else\n"
    "  h ^= pId->ino;\n"
    "#endif\n"
    "  h *= 0xBF58476D1CE4E5B9ULL;\n"
    "  return &inodeHash[(h >> 32) & (UNIX_INODE_HASH_SIZE-1)];\n"
    "}\n"
    "static unixInodeInfo *inodeFind(const struct unixFileId *pId){\n"
    "  unixInodeInfo *p = *inodeBucket(pId);\n"
    "  while( p && memcmp(pId, &p->fileId, sizeof(*pId)) ) p = p->pHashNext;\n"
    "  return p;\n"
    "}\n",
)

# 3. Release: unlink from its bucket too.
replace_once(
    "      if( pInode->pNext ){\n"
    "        assert( pInode->pNext->pPrev==pInode );\n"
    "        pInode->pNext->pPrev = pInode->pPrev;\n"
    "      }\n"
    "      sqlite3_mutex_free(pInode->pLockMutex);\n",
    "      if( pInode->pNext ){\n"
    "        assert( pInode->pNext->pPrev==pInode );\n"
    "        pInode->pNext->pPrev = pInode->pPrev;\n"
    "      }\n"
    "      {\n"
    "        unixInodeInfo **pp = inodeBucket(&pInode->fileId);\n"
    "        while( *pp!=pInode ){\n"
    "          assert( *pp!=0 );\n"
    "          pp = &(*pp)->pHashNext;\n"
    "        }\n"
    "        *pp = pInode->pHashNext;\n"
    "      }\n"
    "      sqlite3_mutex_free(pInode->pLockMutex);\n",
)

# 4. findInodeInfo: look up in the table, and add new objects to it.
replace_once(
    "  assert( unixMutexHeld() );\n"
    "  pInode = inodeList;\n"
    "  while( pInode && memcmp(&fileId, &pInode->fileId, sizeof(fileId)) ){\n"
    "    pInode = pInode->pNext;\n"
    "  }\n",
    "  assert( unixMutexHeld() );\n"
    "  pInode = inodeFind(&fileId);\n",
)
replace_once(
    "    if( inodeList ) inodeList->pPrev = pInode;\n"
    "    inodeList = pInode;\n",
    "    if( inodeList ) inodeList->pPrev = pInode;\n"
    "    inodeList = pInode;\n"
    "    {\n"
    "      unixInodeInfo **pBucket = inodeBucket(&fileId);\n"
    "      pInode->pHashNext = *pBucket;\n"
    "      *pBucket = pInode;\n"
    "    }\n",
)

# 5. findReusableFd: the same lookup, with the key built as findInodeInfo builds it.
replace_once(
    "    unixInodeInfo *pInode;\n"
    "\n"
    "    pInode = inodeList;\n"
    "    while( pInode && (pInode->fileId.dev!=sStat.st_dev\n"
    "                     || pInode->fileId.ino!=(u64)sStat.st_ino) ){\n"
    "       pInode = pInode->pNext;\n"
    "    }\n",
    "    unixInodeInfo *pInode;\n"
    "    struct unixFileId fileId;\n"
    "\n"
    "    memset(&fileId, 0, sizeof(fileId));\n"
    "    fileId.dev = sStat.st_dev;\n"
    "    fileId.ino = (u64)sStat.st_ino;\n"
    "    pInode = inodeFind(&fileId);\n",
)

# 6. No process-wide allocation statistics (see the second change above).
replace_once(
    "#if !defined(SQLITE_DEFAULT_MEMSTATUS)\n"
    "# define SQLITE_DEFAULT_MEMSTATUS 1\n"
    "#endif\n",
    "#if !defined(SQLITE_DEFAULT_MEMSTATUS)\n"
    "# define SQLITE_DEFAULT_MEMSTATUS 0 /* Ward: no global allocation mutex */\n"
    "#endif\n",
)

# 7. A smaller default lookaside buffer (see the third change above).
replace_once(
    "#   define SQLITE_DEFAULT_LOOKASIDE 1200,40   /* 48KB of memory */\n",
    "#   define SQLITE_DEFAULT_LOOKASIDE 1200,6    /* Ward: 7.2KB, thousands are open */\n",
)

open(path, "w", encoding="utf-8").write(src)
print(f"patched {path}")
