/** Where systemd's storage tools look for a provider named "diskseq" (docs/storage-provider.md). */
export const DEFAULT_VARLINK_SOCKET_PATH = '/run/systemd/io.systemd.StorageProvider/diskseq';
