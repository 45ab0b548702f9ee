// Package cloudoptest holds what CITA-Cloud's two cloud-op generations
// print, for the fake cloud-op binaries of the job's tests and of the
// end-to-end job runner.
package cloudoptest

import "github.com/cita-cloud/cita-node-operator/pkg/nodeops/jobargs"

// Help is each generation's `cloud-op --help` as the real binaries print
// it (abridged). datamove.DetectCloudOp tells the generation from the
// subcommands listed: rollback (current), recover / state-recover (legacy).
var Help = map[string]string{
	jobargs.CloudOpLegacy: `cloud-op 0.2.1
cita-cloud operation tool

USAGE:
    cloud-op <SUBCOMMAND>

OPTIONS:
    -h, --help       Print help information
    -V, --version    Print version information

SUBCOMMANDS:
    help             Print this message or the help of the given subcommand(s)
    recover          recover chain from early state
    state-backup     backup executor and storage state of a specified height
    state-recover    recover chain from a specified height state backup
`,
	jobargs.CloudOpCurrent: `cloud-op 6.7.4
Usage: cloud-op <COMMAND>

Commands:
  rollback        rollback chain data to a specified height
  cloud-rollback  rollback cloud storage to a specified height
  backup          backup chain data of a specified height
  export          export blocks to a directory
  help            Print this message or the help of the given subcommand(s)

Options:
  -h, --help     Print help
  -V, --version  Print version
`,
}
