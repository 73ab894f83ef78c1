export function ago(iso: string | null, now = Date.now()): string {
  if (!iso) return '-';
  const s = Math.round((now - Date.parse(iso)) / 1000);
  if (s < 0) return `in ${-s}s`;
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return iso.slice(0, 16).replace('T', ' ');
}

export const time = (iso: string | number) => new Date(iso).toISOString().slice(11, 23);

export const json = (v: unknown) => JSON.stringify(v, null, 2);

/** "3 FINAL, 1 WAITING" from counts by state (zeros left out). */
export function counts(byState: Record<string, number>): string {
  const parts = Object.entries(byState)
    .filter(([, n]) => n > 0)
    .map(([s, n]) => `${n} ${s}`);
  return parts.length ? parts.join(', ') : '0';
}
