package datamove

// The standard library's syscall package lacks syncfs(2); its number per architecture.
const sysSyncfs = 267
