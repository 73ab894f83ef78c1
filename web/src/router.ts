// Path-based routing in the browser: /, /runners, /workplans/:id[?version=N].
import { useEffect, useState } from 'preact/hooks';

export function navigate(href: string): void {
  history.pushState(null, '', href);
  dispatchEvent(new PopStateEvent('popstate'));
}

export function useLocation(): URL {
  const [url, setUrl] = useState(() => new URL(location.href));
  useEffect(() => {
    const on = () => setUrl(new URL(location.href));
    addEventListener('popstate', on);
    return () => removeEventListener('popstate', on);
  }, []);
  return url;
}

/** Click handler for in-app links: no reload. */
export function link(e: MouseEvent): void {
  const a = (e.currentTarget as HTMLAnchorElement | null)?.getAttribute('href');
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  navigate(a);
}
