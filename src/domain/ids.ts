/** The id rule for workplans, checks, stages, runners and requests: 1 to 256 characters, no white space or controls. */
export const ID_PATTERN = /^[^\s\p{C}]{1,256}$/u;

export const isValidId = (s: string): boolean => ID_PATTERN.test(s);

/** What a bad id is told. */
export const ID_RULE = 'must be 1-256 printable characters without spaces';
