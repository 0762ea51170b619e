// Element lookups for the pages' scripts: an element the page (or the script itself) always puts
// there, checked to be what the code takes it for, so a changed page fails loudly instead of later.

/** The page's element `#id`, as `type` (HTMLElement unless said). */
export function byId(id: string): HTMLElement;
export function byId<T extends HTMLElement>(id: string, type: new () => T): T;
export function byId(id: string, type: new () => HTMLElement = HTMLElement): HTMLElement {
  const el = document.getElementById(id);
  if (!(el instanceof type)) throw new Error(`the page has no #${id} (${type.name})`);
  return el;
}

/** The first element under `parent` matching `selector`, as `type`. */
export function find<T extends Element>(parent: ParentNode, selector: string, type: new () => T): T {
  const el = parent.querySelector(selector);
  if (!(el instanceof type)) throw new Error(`no ${selector} (${type.name}) where the script put one`);
  return el;
}
