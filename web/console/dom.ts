// Small DOM helpers: the console builds its few elements by hand, with
// textContent only (nothing from the server is ever parsed as HTML).

type Attrs = Record<string, string | boolean | ((ev: Event) => void)>;

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K, attrs: Attrs = {}, ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === "function") e.addEventListener(k.replace(/^on/, ""), v);
    else if (typeof v === "boolean") { if (v) e.setAttribute(k, ""); }
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

export function byId<T extends HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`#${id} missing from index.html`);
  return e as T;
}

// setText changes a node's text only when it differs, so that a live
// table redrawn every second does not disturb screen readers or selection.
export function setText(e: Element, text: string): void {
  if (e.textContent !== text) e.textContent = text;
}

// clock formats seconds as m:ss or h:mm:ss.
export function clock(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}
