"""Earlier stereo-codec weights, kept so that every .sbic file they wrote still decodes.

The stereo-codec wheel carries only each variant's default weights and the files they count from;
every other version its manifest lists is package data here. `stereocodec.store` looks here when a
file's weights are not in its own store; nothing needs importing by hand.
"""
