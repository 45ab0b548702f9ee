package datamove

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
)

// Chown gives everything under root (root included) to uid:gid, like `chown -R` without
// -L: symlinks are changed themselves (lchown) and never followed, so a link pointing out of
// the node root cannot hand a file elsewhere to the node's user. Entries already owned right
// are left alone (so is a second name of a file already changed); the count is of entries
// changed.
func Chown(ctx context.Context, root string, uid, gid int) (changed int64, err error) {
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st := statT(fi); int(st.Uid) == uid && int(st.Gid) == gid {
			return nil
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return err
		}
		changed++
		return nil
	})
	if err != nil {
		return changed, err
	}
	// Make the new owners durable before the node is started with them.
	return changed, syncFS(root)
}
