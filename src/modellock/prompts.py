"""Built-in key prompts: style edits in the spirit of the paper's key prompts.

``STYLE_PROMPTS`` is the pool ``modellock keygen`` draws from when no prompt is given.
"""

STYLE_PROMPTS = [
    "with oil pastel",
    "as a charcoal sketch",
    "as a watercolor painting",
    "in the style of a woodcut print",
    "as a mosaic of small tiles",
    "as a pencil drawing",
    "in the style of ukiyo-e",
    "as a stained glass window",
    "as a pop art poster",
    "with thick impasto brush strokes",
    "as a pointillist painting",
    "as an etching",
    "in neon colors",
    "as a linocut",
    "as a cubist painting",
    "as a chalk drawing on a blackboard",
    "as an embroidered tapestry",
    "as a blueprint",
    "as a comic book panel",
    "as a low-poly render",
]
